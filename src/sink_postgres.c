/*
 * sink_postgres.c - the postgres sink: one row per message in a PostgreSQL
 * table (README.md, "The postgres sink").
 *
 * Rows.  The table (postgres.table, created if absent) has the columns
 * origin bigint, seq bigint, received_at timestamptz, parts integer and
 * body bytea, and the primary key (origin, seq); origin holds the bits of
 * the unsigned origin.
 *
 * A batch is one transaction: BEGIN, COPY ... FROM STDIN in the binary
 * format, COMMIT; its messages are reported stored once the COMMIT's
 * result came back.  COPY is the fastest way in, but it is not idempotent:
 * a row already there fails the whole COPY (unique_violation).  That only
 * happens to a batch written again whose earlier COMMIT did land (the
 * connection was lost before its result came), or replayed after a crash;
 * such a batch is rolled back and written the slow way: COPY into a
 * temporary table, then INSERT ... SELECT ... ON CONFLICT DO NOTHING.  So
 * every message is stored once, however often its batch is written.
 *
 * Nothing blocks for long.  Each instance has its own connection, used in
 * libpq's non-blocking mode: connecting (PQconnectStart), sending and
 * reading results all wait on the socket with poll(2) for at most the
 * consumer's poll timeout, and the batch's state carries over to the next
 * call.  While one batch is written the consumer may offer the next
 * (a window of two batches).
 *
 * Failures.  A lost connection, or any SQL error but the unique_violation
 * above, reports the batch SINK_RETRY, with the one waiting behind it, and
 * drops the connection (the server rolls back what was not committed); the
 * consumer offers them again after its backoff.  Connecting again waits a
 * backoff of its own, from 100 ms doubling to 5 s, also while idle, so a
 * server down at start or later is retried without traffic, logged once
 * when it goes away and once when it is back, and counted in the sink's
 * open errors.
 */
#include "config.h"
#include "sink.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "stats.h"
#include "util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define COPY_CHUNK     (256 * 1024) /* bytes handed to PQputCopyData at a time */
#define SQL_MAX        512          /* the longest statement, with a table name of 63 bytes */

/* Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC). */
#define PG_EPOCH_MS 946684800000ll

/* The steps of a batch: statements sent one after the other. */
enum pg_op {
    OP_CREATE,     /* the table, if absent: once per connection */
    OP_BEGIN,
    OP_COPY,       /* COPY into the table (fast path) */
    OP_ROLLBACK,   /* after a unique_violation of OP_COPY */
    OP_TEMP,       /* the temporary table of the slow path, if absent */
    OP_COPY_TEMP,  /* COPY into it */
    OP_MERGE,      /* INSERT ... SELECT ... ON CONFLICT DO NOTHING */
    OP_COMMIT,
    OP_DONE,
};

struct pg_sink {
    const struct conf *cfg;
    sink_done_fn *done;
    void *arg;
    PGconn *conn;          /* NULL when not connected */
    bool is_connecting;    /* conn is between PQconnectStart and CONNECTION_OK */
    PostgresPollingStatusType connect_wait; /* ... and what PQconnectPoll waits for */
    bool has_table;        /* OP_CREATE ran on this connection */
    bool is_down;          /* the last connection attempt failed (logged once) */
    uint64_t retry_at_ms;  /* no new connection before this (monotonic) */
    uint64_t backoff_ms;
    /* The window: pending[0..nbatch) is the batch being written, the rest
     * waits for the next one. */
    struct msg **pending;
    size_t npending;
    size_t nbatch;         /* 0: no batch under way */
    size_t max;            /* output.batch */
    /* The batch under way. */
    const enum pg_op *ops; /* its steps, OP_DONE-terminated */
    size_t op;             /* the step being run */
    bool is_sent;          /* ops[op] was sent; its results are being read */
    bool is_copying;       /* ... and it is a COPY whose data is being sent */
    bool has_failed;       /* ... and it returned an error (err_state) */
    char err_state[6];     /* its SQLSTATE */
    unsigned char *copy;   /* the batch in COPY's binary format */
    size_t copy_len;
    size_t copy_off;       /* bytes of it handed to libpq */
    size_t copy_cap;
    char sql[OP_DONE][SQL_MAX];
};

static const enum pg_op fast_ops[] = { OP_BEGIN, OP_COPY, OP_COMMIT, OP_DONE };
static const enum pg_op fast_ops_create[] = { OP_CREATE, OP_BEGIN, OP_COPY, OP_COMMIT, OP_DONE };
static const enum pg_op slow_ops[] = { OP_ROLLBACK, OP_BEGIN,  OP_TEMP,  OP_COPY_TEMP,
                                       OP_MERGE,    OP_COMMIT, OP_DONE };

/* Notices (CREATE ... IF NOT EXISTS on an existing table) go to the debug log. */
static void
notice(void *arg, const char *message)
{
    (void)arg;
    log_debug("postgres: %.*s", (int)strcspn(message, "\n"), message);
}

static void
disconnect(struct pg_sink *s)
{
    PQfinish(s->conn);
    s->conn = NULL;
    s->is_connecting = false;
    s->has_table = false;
}

/* fail_connect drops a connection attempt and sets when to try again. */
static int
fail_connect(struct pg_sink *s)
{
    const char *why = s->conn != NULL ? PQerrorMessage(s->conn) : "out of memory";

    if (!s->is_down) {
        log_warning("postgres: cannot connect: %.*s (trying again with backoff up to %d s)",
                    (int)strcspn(why, "\n"), why, BACKOFF_MAX_MS / 1000);
    } else {
        log_debug("postgres: cannot connect: %.*s", (int)strcspn(why, "\n"), why);
    }
    stats_sink_error(STATS_SINK_ERROR_OPEN);
    s->is_down = true;
    disconnect(s);
    s->retry_at_ms = util_now_ms() + s->backoff_ms;
    s->backoff_ms = s->backoff_ms * 2 < BACKOFF_MAX_MS ? s->backoff_ms * 2 : BACKOFF_MAX_MS;
    return -ECONNREFUSED;
}

/* wait_fd waits up to timeout_ms for fd to be readable (and writable if is_write). */
static void
wait_fd(int fd, bool is_write, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN | (is_write ? POLLOUT : 0) };

    if (timeout_ms > 0) {
        (void)poll(&p, 1, timeout_ms);
    }
}

static int
remaining_ms(uint64_t deadline_ms)
{
    uint64_t now = util_now_ms();

    return now >= deadline_ms ? 0 : (int)(deadline_ms - now);
}

/*
 * connect_step starts or advances the connection, waiting on its socket
 * until deadline_ms.  Returns 0 once connected, -EINPROGRESS while still
 * connecting or waiting for the backoff, or a negative errno when the
 * attempt failed.
 */
static int
connect_step(struct pg_sink *s, uint64_t deadline_ms)
{
    PostgresPollingStatusType st;

    if (s->conn != NULL && !s->is_connecting) {
        return 0;
    }
    if (s->conn == NULL) {
        uint64_t now = util_now_ms();

        if (now < s->retry_at_ms) {
            /* The backoff: waited out in the caller's time, not busily. */
            uint64_t until = s->retry_at_ms < deadline_ms ? s->retry_at_ms : deadline_ms;

            if (until > now) {
                (void)poll(NULL, 0, (int)(until - now));
            }
            if (util_now_ms() < s->retry_at_ms) {
                return -EINPROGRESS;
            }
        }
        s->conn = PQconnectStart(s->cfg->postgres_conninfo);
        if (s->conn == NULL || PQstatus(s->conn) == CONNECTION_BAD) {
            return fail_connect(s);
        }
        s->is_connecting = true;
        s->connect_wait = PGRES_POLLING_WRITING; /* as libpq's documentation says */
    }
    /* PQconnectPoll is called only once the socket is ready for what it
     * waits for, or it could block. */
    for (st = s->connect_wait; st != PGRES_POLLING_OK; st = s->connect_wait) {
        struct pollfd p = { .fd = PQsocket(s->conn),
                            .events = st == PGRES_POLLING_WRITING ? POLLOUT : POLLIN };

        if (st == PGRES_POLLING_FAILED) {
            return fail_connect(s);
        }
        if (poll(&p, 1, remaining_ms(deadline_ms)) <= 0) {
            return -EINPROGRESS;
        }
        s->connect_wait = PQconnectPoll(s->conn);
    }
    if (PQsetnonblocking(s->conn, 1) < 0) {
        return fail_connect(s);
    }
    PQsetNoticeProcessor(s->conn, notice, NULL);
    s->is_connecting = false;
    s->backoff_ms = BACKOFF_MIN_MS;
    if (s->is_down) {
        log_info("postgres: connected again");
        s->is_down = false;
    }
    return 0;
}

static void
put_be16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void
put_be32(unsigned char *p, uint32_t v)
{
    put_be16(p, (uint16_t)(v >> 16));
    put_be16(p + 2, (uint16_t)v);
}

static void
put_be64(unsigned char *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

/* The fixed part of a row: field count, then origin, seq, received_at, parts with lengths. */
#define ROW_FIXED (2 + (4 + 8) * 3 + (4 + 4) + 4)

/*
 * encode_copy writes the batch in COPY's binary format: the signature and
 * header, one tuple per message, the trailer.  Returns 0 or -ENOMEM.
 */
static int
encode_copy(struct pg_sink *s)
{
    static const unsigned char header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
    size_t need = sizeof(header) + 2;
    unsigned char *p;

    for (size_t i = 0; i < s->nbatch; i++) {
        need += ROW_FIXED + msg_binary_size(s->pending[i]);
    }
    if (need > s->copy_cap) {
        unsigned char *b = realloc(s->copy, need);

        if (b == NULL) {
            return -ENOMEM;
        }
        s->copy = b;
        s->copy_cap = need;
    }
    p = s->copy;
    memcpy(p, header, sizeof(header));
    p += sizeof(header);
    for (size_t i = 0; i < s->nbatch; i++) {
        const struct msg *m = s->pending[i];
        /* A one-frame body is its payload; several are the binary record
         * format (msg_body()), encoded here in place. */
        size_t len = m->nframes == 1 ? m->size : msg_binary_size(m);
        int64_t us = ((int64_t)m->received_ms - PG_EPOCH_MS) * 1000;

        put_be16(p, 5);
        put_be32(p + 2, 8);
        put_be64(p + 6, m->id.origin);
        put_be32(p + 14, 8);
        put_be64(p + 18, m->id.seq);
        put_be32(p + 26, 8);
        put_be64(p + 30, (uint64_t)us);
        put_be32(p + 38, 4);
        put_be32(p + 42, (uint32_t)m->nframes);
        put_be32(p + 46, (uint32_t)len);
        p += ROW_FIXED;
        if (m->nframes == 1) {
            if (len > 0) {
                memcpy(p, msg_frame(m, 0).data, len);
            }
        } else {
            (void)msg_encode_binary(m, p);
        }
        p += len;
    }
    put_be16(p, 0xffff);
    s->copy_len = (size_t)(p + 2 - s->copy);
    return 0;
}

/* batch_end reports the batch under way and moves the waiting ones up. */
static void
batch_end(struct pg_sink *s, enum sink_outcome outcome, int err)
{
    size_t n = s->nbatch;

    s->npending -= n;
    memmove(s->pending, s->pending + n, s->npending * sizeof(*s->pending));
    s->nbatch = 0;
    s->ops = NULL;
    s->is_sent = s->is_copying = s->has_failed = false;
    s->done(s->arg, n, outcome, err);
}

/*
 * batch_fail reports the batch SINK_RETRY and drops the connection.  The
 * batch waiting behind it goes back with it: written first, it would
 * overtake the failed one, and a consumer's messages are stored in order.
 */
static int
batch_fail(struct pg_sink *s, const char *why, int err)
{
    s->nbatch = s->npending;
    log_warning("postgres: %s: %.*s (%zu messages to write again)", s->sql[s->ops[s->op]],
                (int)strcspn(why, "\n"), why, s->nbatch);
    stats_sink_error(STATS_SINK_ERROR_WRITE);
    if (PQstatus(s->conn) == CONNECTION_BAD && !s->is_down) {
        log_warning("postgres: connection lost");
    }
    disconnect(s);
    s->retry_at_ms = util_now_ms() + s->backoff_ms;
    batch_end(s, SINK_RETRY, err);
    return err;
}

/* send_copy hands the COPY data to libpq, as much as it takes now. Returns < 0 on failure. */
static int
send_copy(struct pg_sink *s)
{
    int r;

    while (s->copy_off < s->copy_len) {
        size_t n = s->copy_len - s->copy_off < COPY_CHUNK ? s->copy_len - s->copy_off : COPY_CHUNK;
        r = PQputCopyData(s->conn, (const char *)s->copy + s->copy_off, (int)n);

        if (r == 0) {
            return 0; /* libpq's buffer is full: wait until the socket drains */
        }
        if (r < 0) {
            goto ended;
        }
        s->copy_off += n;
    }
    r = PQputCopyEnd(s->conn, NULL);
    if (r == 0) {
        return 0;
    }
ended:
    s->is_copying = false;
    /* A COPY the server ended (an error) is not a lost connection: its
     * result says what happened. */
    return r > 0 || PQstatus(s->conn) == CONNECTION_OK ? 1 : -1;
}

/*
 * is_expected tells the errors that are not failures: rows already there
 * (unique_violation) for the fast COPY, and for the CREATE TABLE IF NOT
 * EXISTS of two connections at once, the table or its type made by the
 * other one meanwhile (duplicate_table, unique_violation).
 */
static bool
is_expected(const struct pg_sink *s)
{
    enum pg_op op = s->ops[s->op];

    return (op == OP_COPY && strcmp(s->err_state, "23505") == 0) ||
           (op == OP_CREATE &&
            (strcmp(s->err_state, "23505") == 0 || strcmp(s->err_state, "42P07") == 0));
}

/*
 * read_results reads what results have arrived for the step under way.
 * Returns 1 when the step is over (its results all read), 0 when more are
 * to come, or a negative errno (the batch was failed).
 */
static int
read_results(struct pg_sink *s)
{
    PGresult *res;

    if (!PQconsumeInput(s->conn)) {
        return batch_fail(s, PQerrorMessage(s->conn), -ECONNRESET);
    }
    while (!s->is_copying && !PQisBusy(s->conn)) {
        res = PQgetResult(s->conn);
        if (res == NULL) {
            return 1;
        }
        switch (PQresultStatus(res)) {
        case PGRES_COMMAND_OK:
            break;
        case PGRES_COPY_IN:
            s->is_copying = true;
            s->copy_off = 0;
            break;
        default:
            if (!s->has_failed) {
                const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

                snprintf(s->err_state, sizeof(s->err_state), "%s", state ? state : "");
                s->has_failed = true;
                if (!is_expected(s)) {
                    log_warning("postgres: %s: %.*s", s->sql[s->ops[s->op]],
                                (int)strcspn(PQresultErrorMessage(res), "\n"),
                                PQresultErrorMessage(res));
                }
            }
            break;
        }
        PQclear(res);
    }
    return 0;
}

/* step_over moves the batch to its next step after ops[op] ended. */
static int
step_over(struct pg_sink *s)
{
    enum pg_op op = s->ops[s->op];

    s->is_sent = false;
    if (s->has_failed) {
        s->has_failed = false;
        if (op == OP_COPY && is_expected(s)) {
            /* Rows already there: this batch was stored before, in part or
             * whole.  Roll back and write it the idempotent way. */
            log_info("postgres: a batch of %zu messages written again has rows stored"
                     " already: inserting only the missing ones",
                     s->nbatch);
            s->ops = slow_ops;
            s->op = 0;
            return 0;
        }
        if (!is_expected(s)) {
            return batch_fail(s, "statement failed", -EIO);
        }
    }
    if (op == OP_CREATE) {
        s->has_table = true;
    }
    if (s->ops[++s->op] == OP_DONE) {
        batch_end(s, SINK_STORED, 0);
    }
    return 0;
}

/*
 * drive runs the window until deadline_ms: connects, starts a batch, sends
 * its steps and reads their results.  Returns 0, or a negative errno when
 * a batch failed or the server cannot be reached.
 */
static int
drive(struct pg_sink *s, uint64_t deadline_ms)
{
    int err;

    for (;;) {
        bool is_write, was_copying;
        int r;

        if (s->npending == 0 && s->conn != NULL && !s->is_connecting) {
            return 0;
        }
        /* Idle, a connection is made in passing: only a batch waits for it. */
        err = connect_step(s, s->npending > 0 ? deadline_ms : util_now_ms());
        if (err < 0) {
            /* Not a failed call: the batch waits in flight, the sink logs
             * and counts the attempts itself. */
            return 0;
        }
        if (s->npending == 0) {
            return 0;
        }
        if (s->nbatch == 0) {
            s->nbatch = s->npending < s->max ? s->npending : s->max;
            if (encode_copy(s) < 0) {
                s->nbatch = 0;
                return -ENOMEM;
            }
            s->ops = s->has_table ? fast_ops : fast_ops_create;
            s->op = 0;
        }
        if (!s->is_sent) {
            if (!PQsendQuery(s->conn, s->sql[s->ops[s->op]])) {
                return batch_fail(s, PQerrorMessage(s->conn), -ECONNRESET);
            }
            s->is_sent = true;
        }
        if (s->is_copying && send_copy(s) < 0) {
            return batch_fail(s, PQerrorMessage(s->conn), -ECONNRESET);
        }
        r = PQflush(s->conn);
        if (r < 0) {
            return batch_fail(s, PQerrorMessage(s->conn), -ECONNRESET);
        }
        is_write = r == 1 || s->is_copying;
        was_copying = s->is_copying;
        r = read_results(s);
        if (r < 0) {
            return r;
        }
        if (r == 1) {
            r = step_over(s);
            if (r < 0) {
                return r;
            }
            continue;
        }
        if (s->is_copying && !was_copying) {
            continue; /* COPY_IN just arrived: send the data at once */
        }
        if (remaining_ms(deadline_ms) == 0) {
            return 0;
        }
        wait_fd(PQsocket(s->conn), is_write, remaining_ms(deadline_ms));
    }
}

static void
prepare_sql(struct pg_sink *s)
{
    const char *t = s->cfg->postgres_table;
    const char *cols = "origin, seq, received_at, parts, body";

    /* The name is an identifier checked by conf (letters, digits, '_'):
     * quoted, it can be any of them, even a keyword; it is then
     * case-sensitive, used exactly as configured. */
    snprintf(s->sql[OP_CREATE], SQL_MAX,
             "CREATE TABLE IF NOT EXISTS \"%s\" (origin bigint NOT NULL, seq bigint NOT NULL,"
             " received_at timestamptz NOT NULL, parts integer NOT NULL, body bytea NOT NULL,"
             " PRIMARY KEY (origin, seq))",
             t);
    snprintf(s->sql[OP_BEGIN], SQL_MAX, "BEGIN");
    snprintf(s->sql[OP_COPY], SQL_MAX, "COPY \"%s\" (%s) FROM STDIN (FORMAT binary)", t, cols);
    snprintf(s->sql[OP_ROLLBACK], SQL_MAX, "ROLLBACK");
    snprintf(s->sql[OP_TEMP], SQL_MAX,
             "CREATE TEMPORARY TABLE IF NOT EXISTS zpipe_batch (LIKE \"%s\") ON COMMIT DELETE ROWS",
             t);
    snprintf(s->sql[OP_COPY_TEMP], SQL_MAX, "COPY zpipe_batch (%s) FROM STDIN (FORMAT binary)",
             cols);
    snprintf(s->sql[OP_MERGE], SQL_MAX,
             "INSERT INTO \"%s\" (%s) SELECT %s FROM zpipe_batch ON CONFLICT (origin, seq)"
             " DO NOTHING",
             t, cols, cols);
    snprintf(s->sql[OP_COMMIT], SQL_MAX, "COMMIT");
}

static int
sink_postgres_open(const struct sink_env *env, sink_done_fn *done, void *arg, void **state)
{
    struct pg_sink *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return -ENOMEM;
    }
    s->cfg = env->cfg;
    s->done = done;
    s->arg = arg;
    s->max = (size_t)env->cfg->output_batch;
    s->backoff_ms = BACKOFF_MIN_MS;
    s->pending = calloc(2 * s->max, sizeof(*s->pending));
    if (s->pending == NULL) {
        free(s);
        return -ENOMEM;
    }
    prepare_sql(s);
    /* Start connecting; a server that is not there yet is not an error:
     * it is tried again with backoff (and logged). */
    (void)drive(s, util_now_ms());
    *state = s;
    return 0;
}

static int
sink_postgres_submit(void *state, struct msg *const *msgs, size_t n, size_t *accepted)
{
    struct pg_sink *s = state;
    size_t room = 2 * s->max - s->npending;
    size_t k = n < room ? n : room;

    memcpy(s->pending + s->npending, msgs, k * sizeof(*msgs));
    s->npending += k;
    *accepted = k;
    return drive(s, util_now_ms());
}

static int
sink_postgres_poll(void *state, int timeout_ms)
{
    return drive(state, util_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0));
}

static void
sink_postgres_abort(void *state)
{
    struct pg_sink *s = state;
    size_t n = s->npending;

    /* A COMMIT sent but not answered may still land: the batch is spilled
     * and written again, and the rows already there are skipped then. */
    disconnect(s);
    s->npending = s->nbatch = 0;
    s->ops = NULL;
    s->is_sent = s->is_copying = s->has_failed = false;
    if (n > 0) {
        s->done(s->arg, n, SINK_RETRY, 0);
    }
}

static int
sink_postgres_reopen(void *state)
{
    (void)state;
    return 0; /* nothing to reopen: a connection that fails is made again by itself */
}

static void
sink_postgres_close(void *state)
{
    struct pg_sink *s = state;

    if (s == NULL) {
        return;
    }
    disconnect(s);
    free(s->copy);
    free(s->pending);
    free(s);
}

const struct sink_ops sink_postgres_ops = {
    .name = "postgres",
    .open = sink_postgres_open,
    .submit = sink_postgres_submit,
    .poll = sink_postgres_poll,
    .abort = sink_postgres_abort,
    .reopen = sink_postgres_reopen,
    .close = sink_postgres_close,
};
