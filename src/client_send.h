/*
 * client_send.h - the zpipe client's sending engine, used by push and bench.
 *
 * One job is one socket, on a ZeroMQ context of its own, connected to
 * zpiped's input endpoint, that sends every message of a source.  In pull
 * mode that is a PUSH socket; in router mode a DEALER socket that sends
 * ["", payload] and keeps up to CLIENT_SEND_WINDOW messages in flight while
 * it waits for their ["", "OK"] or ["", "ERR ..."] replies.  The daemon
 * answers the messages of one connection in the order they arrived (README,
 * "Configuration"), so the n-th reply belongs to the n-th message and no id
 * is needed.
 *
 * Every function here prints why it failed (client.h) before returning a
 * negative errno.  Jobs on different threads share nothing but the lines
 * they wait at.
 */
#ifndef ZPIPE_CLIENT_SEND_H
#define ZPIPE_CLIENT_SEND_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Router mode: most messages awaiting a reply on one socket (<= REPLY_WINDOW_MAX). */
#define CLIENT_SEND_WINDOW 1000

/* Returned by a job whose messages all went out, some answered ERR. */
#define CLIENT_SEND_REFUSED (-20001)

/*
 * A source hands out the messages to send, one at a time.  next() points
 * *data and *len at the next message, valid until the following call, and
 * returns 1; it returns 0 at the end and a negative errno on failure.
 */
struct client_source {
    int (*next)(struct client_source *src, const char **data, size_t *len);
    const char *name;               /* for error messages: "stdin" */
};

/* What one socket is to do; filled in by a subcommand, read-only after. */
struct client_job {
    const char *label;              /* message prefix: "push", "bench: client 3" */
    const char *endpoint;
    bool is_router;
    int timeout_ms;                 /* longest wait without progress; -1 = forever */
    uint64_t err_report_limit;      /* ERR replies printed; later ones only counted */
    const char *curve_server_key;   /* zcert public key file of zpiped, or NULL: no CURVE */
    const char *curve_secret_key;   /* zcert secret key file, our key pair (with the above) */
};

/* What one socket did. */
struct client_tally {
    uint64_t sent;                  /* messages handed to zmq_send */
    uint64_t bytes;                 /* payload bytes of those */
    uint64_t acked;                 /* router mode: answered OK */
    uint64_t refused;               /* router mode: answered ERR */
};

/*
 * A line where jobs on several threads wait until the thread that started
 * them opens it: the start line, which they reach once connected, so that
 * they send together, and bench --hold's finish line, which they reach after
 * their last send, before closing.
 */
struct client_line {
    pthread_mutex_t lock;           /* protects the fields below */
    pthread_cond_t cond;            /* broadcast when ready grows and when is_open turns true */
    unsigned ready;                 /* jobs waiting at the line */
    unsigned failed;                /* of those, the ones that failed on the way */
    bool is_open;
};

#define CLIENT_LINE_INIT \
    { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER }

/*
 * client_line_await blocks until n jobs wait at the line and returns how many
 * of them failed on the way.  What a job wrote before reaching the line (its
 * tally) may be read after this returns.
 */
unsigned client_line_await(struct client_line *line, unsigned n);

/* client_line_open lets every job at the line go, and any that comes later. */
void client_line_open(struct client_line *line);

/*
 * client_send_run connects a socket for job and sends every message of src;
 * in router mode it also waits for every reply.  If start is not NULL, it
 * waits there once connected, also when connecting failed, so the other jobs
 * are not left waiting.  If finish is not NULL, it waits there after its last
 * send, also after a failure, with the socket still open, and then closes it
 * at once, dropping what is still queued.  Else, in pull mode, closing the
 * socket lingers until the queued messages are out, at most the timeout.
 * Counts what it did in *t.  Blocks; any thread may call it, one job per
 * thread.  Returns 0 when every message went out (and, in router mode, was
 * answered OK), CLIENT_SEND_REFUSED when some were answered ERR, or another
 * negative errno after printing why.
 */
int client_send_run(const struct client_job *job, struct client_source *src,
                    struct client_tally *t, struct client_line *start,
                    struct client_line *finish);

/*
 * client_send_push runs job with the n strings of msgs as the messages, or
 * with each line of stdin (without its newline) when n is 0, and reports how
 * many were refused.  msgs is borrowed.  Returns as client_send_run does.
 */
int client_send_push(const struct client_job *job, char **msgs, int n);

#endif
