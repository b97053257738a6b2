/*
 * test_sink_postgres.c - the postgres sink against a real server: a
 * private cluster started for the test (tests/helpers/pg_cluster.sh; skipped
 * when PostgreSQL is not installed).  Rows and their columns, a batch
 * written again (whole, and in part) stored once, the window, a server that
 * is not there at open, then comes, and goes again, and abort.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "../../src/sink_postgres.c"
#include "tap.h"

static char dir[] = "/tmp/zpipe-test-pg-XXXXXX";
static char cluster[256];
static char conninfo[512];

struct outcomes {
    size_t stored;
    size_t retried;
    int last_err;
    size_t calls;
};

static void
record(void *arg, size_t n, enum sink_outcome outcome, int err)
{
    struct outcomes *o = arg;

    o->calls++;
    if (outcome == SINK_STORED) {
        o->stored += n;
    } else {
        o->retried += n;
        o->last_err = err;
    }
}

static struct conf cfg;
static struct sink_env env = { .cfg = &cfg };

/* Runs pg_cluster.sh CMD on the cluster; returns its exit status. */
static int
cluster_do(const char *cmd)
{
    char line[1024];
    const char *top = getenv("top_srcdir");
    int st;

    snprintf(line, sizeof(line), "sh '%s/tests/helpers/pg_cluster.sh' %s '%s' >&2",
             top ? top : "../..", cmd, cluster);
    st = system(line);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

/* Polls s until o has seen want messages' outcomes, for at most 30 s. */
static bool
poll_until(void *s, const struct outcomes *o, size_t want)
{
    for (int i = 0; i < 300 && o->stored + o->retried < want; i++) {
        (void)sink_postgres_ops.poll(s, SINK_POLL_MAX_MS);
    }
    return o->stored + o->retried >= want;
}

static PGconn *
reader(void)
{
    PGconn *c = PQconnectdb(conninfo);

    if (PQstatus(c) != CONNECTION_OK) {
        bail_out("connect: %s", PQerrorMessage(c));
    }
    return c;
}

/* The first column of sql's first row as a number, or -1. */
static long long
query_int(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    long long v = -1;

    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    } else {
        diag("%s: %s", sql, PQresultErrorMessage(r));
    }
    PQclear(r);
    return v;
}

static void
make_msgs(struct msg **v, size_t n, uint64_t origin, uint64_t first)
{
    for (size_t i = 0; i < n; i++) {
        char text[32];

        snprintf(text, sizeof(text), "m%zu", first + i);
        v[i] = msg_create_copy(text, strlen(text));
        if (!v[i]) {
            bail_out("msg_create_copy");
        }
        v[i]->id = (struct msg_id){ origin, first + i };
        v[i]->received_ms = 1700000000123ull;
    }
}

static void
test_rows(void)
{
    static const size_t lens[] = { 1, 0, 2 };
    struct outcomes o = { 0 };
    struct msg *v[3];
    size_t accepted = 0;
    void *s = NULL;
    PGconn *c;
    PGresult *r;

    ok(sink_postgres_ops.open(&env, record, &o, &s) == 0, "open");
    v[0] = msg_create_copy("hello", 5);
    v[1] = msg_create_copy(NULL, 0);
    v[2] = msg_create(3, lens);
    if (!v[0] || !v[1] || !v[2]) {
        bail_out("msg_create");
    }
    memcpy(msg_frame_data(v[2], 0), "a", 1);
    memcpy(msg_frame_data(v[2], 2), "bc", 2);
    for (size_t i = 0; i < 3; i++) {
        v[i]->id = (struct msg_id){ 0xfedcba9876543210ull, 40 + i };
        v[i]->received_ms = 1700000000123ull;
    }
    ok(sink_postgres_ops.submit(s, v, 3, &accepted) == 0 && accepted == 3, "submit: accepted");
    ok(poll_until(s, &o, 3) && o.stored == 3 && o.calls == 1, "one batch, reported stored");

    c = reader();
    r = PQexec(c, "SELECT origin, seq, (extract(epoch from received_at) * 1000)::bigint, parts,"
                  " encode(body, 'hex') FROM messages ORDER BY seq");
    ok(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 3, "three rows");
    if (PQntuples(r) == 3) {
        ok(strcmp(PQgetvalue(r, 0, 0), "-81985529216486896") == 0 &&
               strcmp(PQgetvalue(r, 0, 1), "40") == 0 &&
               strcmp(PQgetvalue(r, 0, 2), "1700000000123") == 0 &&
               strcmp(PQgetvalue(r, 0, 3), "1") == 0 &&
               strcmp(PQgetvalue(r, 0, 4), "68656c6c6f") == 0,
           "row 1: origin as signed bigint, seq, received_at, parts 1, body the payload");
        ok(strcmp(PQgetvalue(r, 1, 4), "") == 0 && !PQgetisnull(r, 1, 4),
           "row 2: an empty message is an empty bytea");
        ok(strcmp(PQgetvalue(r, 2, 3), "3") == 0 &&
               strcmp(PQgetvalue(r, 2, 4), "800000016180000000000000026263") == 0,
           "row 3: multipart, parts 3, body in the binary record format");
    } else {
        diag("%s", PQresultErrorMessage(r));
    }
    PQclear(r);

    o = (struct outcomes){ 0 };
    ok(sink_postgres_ops.submit(s, v, 3, &accepted) == 0 && poll_until(s, &o, 3) &&
           o.stored == 3,
       "the same batch again: reported stored");
    ok(query_int(c, "SELECT count(*) FROM messages") == 3, "... and stored once");
    PQfinish(c);
    sink_postgres_ops.close(s);
    msg_destroy_batch(v, 3);
}

static void
test_overlap_window(void)
{
    struct outcomes o = { 0 };
    struct msg *v[12];
    size_t accepted = 0, total = 0;
    void *s = NULL;
    PGconn *c = reader();

    make_msgs(v, 12, 7, 1);
    if (sink_postgres_ops.open(&env, record, &o, &s) < 0) {
        bail_out("open");
    }
    ok(sink_postgres_ops.submit(s, v, 2, &accepted) == 0 && poll_until(s, &o, 2) &&
           o.stored == 2,
       "two messages stored");
    /* 2 old and 2 new: the COPY fails on the old ones, the slow path
     * inserts the new ones only. */
    ok(sink_postgres_ops.submit(s, v, 4, &accepted) == 0 && accepted == 4 &&
           poll_until(s, &o, 6) && o.stored == 6 && o.retried == 0,
       "a batch of those two and two new: reported stored");
    ok(query_int(c, "SELECT count(*) FROM messages WHERE origin = 7") == 4,
       "... the new ones added, none twice");
    o = (struct outcomes){ 0 };
    for (size_t off = 4; off < 12; off += accepted) {
        (void)sink_postgres_ops.submit(s, v + off, 12 - off, &accepted);
        total += accepted;
        if (accepted == 0) {
            (void)sink_postgres_ops.poll(s, SINK_POLL_MAX_MS);
        }
    }
    ok(total == 8 && poll_until(s, &o, 8) && o.stored == 8,
       "eight more through a window of two batches of 4");
    ok(query_int(c, "SELECT count(*) FROM messages WHERE origin = 7") == 12, "twelve rows");
    PQfinish(c);
    sink_postgres_ops.close(s);
    msg_destroy_batch(v, 12);
}

/* run runs sql on c; true if it worked. */
static bool
run(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool is_ok = PQresultStatus(r) == PGRES_COMMAND_OK;

    if (!is_ok) {
        diag("%s: %s", sql, PQresultErrorMessage(r));
    }
    PQclear(r);
    return is_ok;
}

/*
 * A batch that fails while the next one waits in the window: both go back
 * SINK_RETRY, so the second is never stored before the first.
 */
static void
test_failed_window(void)
{
    struct outcomes o = { 0 };
    struct msg *v[8];
    size_t accepted = 0;
    void *s = NULL;
    PGconn *c = reader();

    make_msgs(v, 8, 9, 1);
    if (sink_postgres_ops.open(&env, record, &o, &s) < 0) {
        bail_out("open");
    }
    ok(run(c, "ALTER TABLE messages ADD CONSTRAINT first_fails CHECK (origin <> 9 OR seq > 4)"),
       "a constraint that the first batch breaks");
    ok(sink_postgres_ops.submit(s, v, 8, &accepted) == 0 && accepted == 8,
       "two batches of 4 in the window");
    ok(poll_until(s, &o, 8) && o.retried == 8 && o.stored == 0,
       "the first fails: both are SINK_RETRY, the second is not written before it");
    ok(query_int(c, "SELECT count(*) FROM messages WHERE origin = 9") == 0, "no row of either");
    ok(run(c, "ALTER TABLE messages DROP CONSTRAINT first_fails"), "the constraint dropped");
    o = (struct outcomes){ 0 };
    ok(sink_postgres_ops.submit(s, v, 8, &accepted) == 0 && accepted == 8 &&
           poll_until(s, &o, 8) && o.stored == 8,
       "offered again: both stored");
    ok(query_int(c, "SELECT count(*) FROM messages WHERE origin = 9") == 8, "eight rows");
    PQfinish(c);
    sink_postgres_ops.close(s);
    msg_destroy_batch(v, 8);
}

static void
test_server_away(void)
{
    struct outcomes o = { 0 };
    struct msg *v[4];
    size_t accepted = 0;
    void *s = NULL;
    PGconn *c;

    make_msgs(v, 4, 8, 1);
    ok(cluster_do("stop") == 0, "the server is stopped");
    ok(sink_postgres_ops.open(&env, record, &o, &s) == 0 && s != NULL,
       "open with the server down: not an error");
    ok(sink_postgres_ops.submit(s, v, 2, &accepted) == 0 && accepted == 2 &&
           sink_postgres_ops.poll(s, SINK_POLL_MAX_MS) <= 0 && o.calls == 0,
       "a batch waits, in flight");
    ok(cluster_do("start") == 0, "the server is started");
    ok(poll_until(s, &o, 2) && o.stored == 2, "the batch is stored once it is there");

    ok(cluster_do("restart") == 0, "the server restarts (immediate shutdown)");
    o = (struct outcomes){ 0 };
    (void)sink_postgres_ops.submit(s, v + 2, 2, &accepted);
    ok(poll_until(s, &o, 2) && o.calls >= 1,
       "a batch on the lost connection gets an outcome");
    if (o.retried > 0) {
        ok(o.last_err < 0, "... SINK_RETRY with an error (%d)", o.last_err);
        o = (struct outcomes){ 0 };
        (void)sink_postgres_ops.submit(s, v + 2, 2, &accepted);
    } else {
        ok(1, "... stored at once (the connection was made again first)");
    }
    ok(poll_until(s, &o, 2) && o.stored == 2, "written again: stored");
    c = reader();
    ok(query_int(c, "SELECT count(*) FROM messages WHERE origin = 8") == 4, "four rows");
    PQfinish(c);

    ok(cluster_do("stop") == 0, "the server is stopped again");
    o = (struct outcomes){ 0 };
    (void)sink_postgres_ops.submit(s, v, 4, &accepted);
    for (int i = 0; i < 5 && o.calls == 0; i++) {
        (void)sink_postgres_ops.poll(s, SINK_POLL_MAX_MS);
    }
    if (o.calls > 0) {
        /* The lost connection failed the batch: offer it again. */
        o = (struct outcomes){ 0 };
        (void)sink_postgres_ops.submit(s, v, 4, &accepted);
    }
    sink_postgres_ops.abort(s);
    ok(o.calls == 1 && o.retried == 4 && o.last_err == 0,
       "abort: what is in flight is SINK_RETRY (to spill)");
    sink_postgres_ops.close(s);
    ok(cluster_do("start") == 0, "the server is started again");
    msg_destroy_batch(v, 4);
}

int
main(void)
{
    int st;

    if (!mkdtemp(dir)) {
        bail_out("mkdtemp");
    }
    snprintf(cluster, sizeof(cluster), "%s/pg", dir);
    snprintf(conninfo, sizeof(conninfo), "host=%s dbname=zpipe user=zpipe", cluster);
    st = cluster_do("start");
    if (st == 77) {
        printf("1..0 # SKIP no PostgreSQL server binaries\n");
        return 0;
    }
    if (st != 0) {
        bail_out("could not start a PostgreSQL cluster in %s", cluster);
    }
    if (conf_init_defaults(&cfg) < 0) {
        bail_out("conf_init_defaults");
    }
    free(cfg.postgres_conninfo);
    cfg.postgres_conninfo = conninfo;
    cfg.output_batch = 4;
    test_rows();
    test_overlap_window();
    test_failed_window();
    test_server_away();
    cfg.postgres_conninfo = NULL;
    conf_free(&cfg);
    (void)cluster_do("stop");
    {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            diag("could not remove %s", dir);
        }
    }
    return done_testing();
}
