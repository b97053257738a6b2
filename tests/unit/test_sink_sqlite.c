/*
 * test_sink_sqlite.c - the sqlite sink against a real database file: rows
 * and their columns, writes again stored once, several instances on
 * several threads without a lock error, a database locked by another
 * connection (SINK_RETRY, then stored), a reader during writes, the window
 * while another instance writes, abort, and a table of other columns.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/sink_sqlite.c"
#include "tap.h"

static char dir[] = "/tmp/zpipe-test-sqlite-XXXXXX";
static char path[256];

/* The outcomes an instance reported, in order, one entry per done() call. */
struct outcomes {
    size_t stored;       /* messages */
    size_t retried;      /* messages */
    int last_err;        /* of the last SINK_RETRY */
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

static void *
open_sink(struct outcomes *o)
{
    void *s = NULL;
    int err = sink_sqlite_ops.open(&env, record, o, &s);

    if (err < 0) {
        bail_out("open: %d", err);
    }
    return s;
}

/* One-frame messages "<prefix><i>" with identities (origin, first + i). */
static void
make_msgs(struct msg **v, size_t n, const char *prefix, uint64_t origin, uint64_t first)
{
    for (size_t i = 0; i < n; i++) {
        char text[32];

        snprintf(text, sizeof(text), "%s%zu", prefix, i);
        v[i] = msg_create_copy(text, strlen(text));
        if (!v[i]) {
            bail_out("msg_create_copy");
        }
        v[i]->id = (struct msg_id){ origin, first + i };
        v[i]->received_ms = 1700000000000ull + i;
    }
}

/* The first integer column of sql's first row (or -1), from a connection of our own. */
static long long
query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    long long v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        diag("%s: %s", sql, sqlite3_errmsg(db));
        return -1;
    }
    if (sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static sqlite3 *
reader(void)
{
    sqlite3 *db;

    if (sqlite3_open(path, &db) != SQLITE_OK) {
        bail_out("sqlite3_open %s", path);
    }
    return db;
}

static void
test_rows(void)
{
    static const size_t lens[] = { 1, 0, 2 };
    struct outcomes o = { 0 };
    struct msg *v[3];
    sqlite3 *db;
    sqlite3_stmt *st;
    size_t accepted = 0;
    void *s = open_sink(&o);

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
    ok(sink_sqlite_ops.submit(s, v, 3, &accepted) == 0 && accepted == 3,
       "submit: all three accepted");
    ok(o.stored == 3 && o.retried == 0 && o.calls == 1, "one transaction, reported stored");

    db = reader();
    ok(query_int(db, "SELECT count(*) FROM messages") == 3, "three rows");
    if (sqlite3_prepare_v2(db,
                           "SELECT origin, seq, received_at, parts, body FROM messages"
                           " ORDER BY seq", -1, &st, NULL) != SQLITE_OK) {
        bail_out("select: %s", sqlite3_errmsg(db));
    }
    ok(sqlite3_step(st) == SQLITE_ROW &&
           (uint64_t)sqlite3_column_int64(st, 0) == 0xfedcba9876543210ull &&
           sqlite3_column_int64(st, 0) < 0 && sqlite3_column_int64(st, 1) == 40 &&
           sqlite3_column_int64(st, 2) == 1700000000123ll && sqlite3_column_int64(st, 3) == 1 &&
           sqlite3_column_bytes(st, 4) == 5 && memcmp(sqlite3_column_blob(st, 4), "hello", 5) == 0,
       "row 1: origin as a signed 64-bit integer, seq, received_at, parts 1, body the payload");
    ok(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 4) == SQLITE_BLOB &&
           sqlite3_column_bytes(st, 4) == 0,
       "row 2: an empty message is an empty blob, not NULL");
    ok(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 3) == 3 &&
           sqlite3_column_bytes(st, 4) == 4 * 3 + 3 &&
           memcmp(sqlite3_column_blob(st, 4),
                  "\x80\0\0\1" "a" "\x80\0\0\0" "\0\0\0\2" "bc", 15) == 0,
       "row 3: multipart, parts 3, body in the binary record format");
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) != SQLITE_OK) {
        bail_out("pragma: %s", sqlite3_errmsg(db));
    }
    ok(sqlite3_step(st) == SQLITE_ROW &&
           strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0,
       "the database is in WAL mode");
    sqlite3_finalize(st);

    ok(sink_sqlite_ops.submit(s, v, 3, &accepted) == 0 && accepted == 3 && o.stored == 6,
       "the same batch again: reported stored");
    ok(query_int(db, "SELECT count(*) FROM messages") == 3,
       "... and stored once: (origin, seq) rows already there are skipped");
    sqlite3_close(db);
    sink_sqlite_ops.close(s);
    msg_destroy_batch(v, 3);
}

struct writer {
    pthread_t tid;
    uint64_t origin;
    struct outcomes o;
};

#define THREAD_MSGS 20000
#define THREAD_BATCH 100

static void *
writer_main(void *arg)
{
    struct writer *w = arg;
    static struct msg *v[2][THREAD_BATCH];
    struct msg **mine = v[w->origin & 1];
    void *s = open_sink(&w->o);

    for (uint64_t sent = 0; sent < THREAD_MSGS; sent += THREAD_BATCH) {
        size_t off = 0;

        make_msgs(mine, THREAD_BATCH, "w", w->origin, sent + 1);
        while (off < THREAD_BATCH) {
            size_t accepted = 0;

            (void)sink_sqlite_ops.submit(s, mine + off, THREAD_BATCH - off, &accepted);
            off += accepted;
            if (off < THREAD_BATCH) {
                (void)sink_sqlite_ops.poll(s, SINK_POLL_MAX_MS);
            }
        }
        /* As the consumer does: wait for the outcome before freeing. */
        while (w->o.stored + w->o.retried < sent + THREAD_BATCH) {
            (void)sink_sqlite_ops.poll(s, SINK_POLL_MAX_MS);
        }
        msg_destroy_batch(mine, THREAD_BATCH);
    }
    sink_sqlite_ops.close(s);
    return NULL;
}

static void
test_threads(void)
{
    struct writer w[2] = { { .origin = 2 }, { .origin = 3 } };
    sqlite3 *db;

    for (int i = 0; i < 2; i++) {
        if (pthread_create(&w[i].tid, NULL, writer_main, &w[i]) != 0) {
            bail_out("pthread_create");
        }
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(w[i].tid, NULL);
    }
    ok(w[0].o.retried == 0 && w[1].o.retried == 0,
       "two instances on two threads: no write failed (no SQLITE_BUSY between them)");
    ok(w[0].o.stored == THREAD_MSGS && w[1].o.stored == THREAD_MSGS,
       "... every message reported stored");
    db = reader();
    ok(query_int(db, "SELECT count(*) FROM messages WHERE origin IN (2, 3)") == 2 * THREAD_MSGS,
       "... and every row is there");
    sqlite3_close(db);
}

static void
test_locked(void)
{
    struct outcomes o = { 0 };
    struct msg *v[4];
    sqlite3 *other = reader(), *rd = reader();
    size_t accepted = 0;
    void *s = open_sink(&o);

    make_msgs(v, 4, "l", 4, 1);
    ok(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK,
       "another connection takes the write lock");
    ok(sink_sqlite_ops.submit(s, v, 4, &accepted) == -EBUSY && accepted == 4 &&
           o.retried == 4 && o.last_err == -EBUSY && o.stored == 0,
       "a write meanwhile fails: SINK_RETRY with -EBUSY, after busy_timeout");
    ok(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK, "the lock is let go");

    ok(sqlite3_exec(rd, "BEGIN; SELECT count(*) FROM messages", NULL, NULL, NULL) == SQLITE_OK,
       "a reader holds a read transaction");
    ok(sink_sqlite_ops.submit(s, v, 4, &accepted) == 0 && o.stored == 4,
       "the write again: stored, the reader does not block it (WAL)");
    ok(query_int(rd, "SELECT count(*) FROM messages WHERE origin = 4") == 0,
       "... and the reader's snapshot does not see it yet");
    sqlite3_exec(rd, "COMMIT", NULL, NULL, NULL);
    ok(query_int(rd, "SELECT count(*) FROM messages WHERE origin = 4") == 4,
       "... its next one does");
    sqlite3_close(rd);
    sqlite3_close(other);
    sink_sqlite_ops.close(s);
    msg_destroy_batch(v, 4);
}

static void
test_window_abort(void)
{
    struct outcomes o = { 0 };
    struct msg *v[6];
    size_t accepted = 0;
    void *s = open_sink(&o);
    sqlite3 *db = reader();

    make_msgs(v, 6, "c", 5, 1);
    pthread_mutex_lock(&write_lock); /* another instance is writing */
    ok(sink_sqlite_ops.submit(s, v, 3, &accepted) == 0 && accepted == 3 && o.calls == 0,
       "while another instance writes: accepted, in flight");
    ok(sink_sqlite_ops.submit(s, v + 3, 3, &accepted) == 0 && accepted == 1 && o.calls == 0,
       "... the window is output.batch (4) messages");
    ok(sink_sqlite_ops.poll(s, 10) == 0 && o.calls == 0, "poll waits its timeout, no outcome");
    sink_sqlite_ops.abort(s);
    ok(o.calls == 1 && o.retried == 4 && o.last_err == 0,
       "abort: the four in flight are SINK_RETRY (to spill), err 0");
    pthread_mutex_unlock(&write_lock);
    ok(query_int(db, "SELECT count(*) FROM messages WHERE origin = 5") == 0,
       "... and none of them was written");

    o = (struct outcomes){ 0 };
    pthread_mutex_lock(&write_lock);
    ok(sink_sqlite_ops.submit(s, v, 2, &accepted) == 0 && accepted == 2 &&
           sink_sqlite_ops.submit(s, v + 2, 2, &accepted) == 0 && accepted == 2 && o.calls == 0,
       "two submits gather while the lock is taken");
    pthread_mutex_unlock(&write_lock);
    ok(sink_sqlite_ops.poll(s, SINK_POLL_MAX_MS) == 0 && o.calls == 1 && o.stored == 4,
       "poll gets the lock: one transaction of both, stored");
    ok(query_int(db, "SELECT count(*) FROM messages WHERE origin = 5") == 4, "four rows");
    sqlite3_close(db);
    sink_sqlite_ops.close(s);
    msg_destroy_batch(v, 6);
}

/* move_db renames the database at path to path + suffix, whose name goes to moved. */
static void
move_db(const char *suffix, char *moved, size_t len)
{
    snprintf(moved, len, "%s%s", path, suffix);
    if (rename(path, moved) != 0) {
        bail_out("rename %s", path);
    }
}

/* query_file is query_int() on a connection of its own to file. */
static long long
query_file(const char *file, const char *sql)
{
    sqlite3 *db;
    long long v;

    if (sqlite3_open(file, &db) != SQLITE_OK) {
        bail_out("sqlite3_open %s", file);
    }
    v = query_int(db, sql);
    sqlite3_close(db);
    return v;
}

/*
 * SIGHUP: every consumer's instance is asked to reopen, and the shared
 * connection is made anew once.  The file renamed away first (as a log
 * rotation does) keeps what was written; the writes after go to a new
 * file at the path.
 */
static void
test_reopen(void)
{
    struct outcomes o1 = { 0 }, o2 = { 0 };
    void *s1 = open_sink(&o1), *s2 = open_sink(&o2);
    char moved[300];
    struct msg *v[3];
    size_t accepted = 0;
    uint64_t before = writer.reopens;

    make_msgs(v, 3, "r", 7, 1);
    ok(sink_sqlite_ops.submit(s1, v, 2, &accepted) == 0 && accepted == 2 && o1.stored == 2,
       "reopen: two rows written before");
    move_db(".1", moved, sizeof(moved));
    ok(sink_sqlite_ops.reopen(s1) == 0 && sink_sqlite_ops.reopen(s2) == 0 &&
           writer.reopens == before + 1,
       "reopen asked by both instances: the connection made anew once");
    ok(sink_sqlite_ops.reopen(s2) == 0 && sink_sqlite_ops.reopen(s1) == 0 &&
           writer.reopens == before + 2,
       "a second SIGHUP: once more, whichever instance asks first");
    ok(sink_sqlite_ops.submit(s2, v + 2, 1, &accepted) == 0 && accepted == 1 && o2.stored == 1,
       "reopen: a row written after");
    sink_sqlite_ops.close(s1);
    sink_sqlite_ops.close(s2);

    ok(query_file(path, "SELECT count(*) FROM messages") == 1 &&
           query_file(path, "SELECT seq FROM messages") == 3,
       "the new file at the path has the row written after the reopen");
    ok(query_file(moved, "SELECT count(*) FROM messages WHERE origin = 7") == 2,
       "the renamed file keeps the two rows written before");
    msg_destroy_batch(v, 3);
}

/*
 * The database renamed, then deleted, without a SIGHUP: the next
 * transaction notices and goes to a new database at the path.  The renamed
 * file keeps every row committed to it: none is left in the WAL at the
 * path, which the new database would throw away.
 */
static void
test_moved(void)
{
    struct outcomes o = { 0 };
    void *s = open_sink(&o);
    char moved[300];
    struct msg *v[4];
    size_t accepted = 0;

    make_msgs(v, 4, "m", 8, 1);
    ok(sink_sqlite_ops.submit(s, v, 2, &accepted) == 0 && accepted == 2 && o.stored == 2,
       "moved: two rows written before");
    move_db(".2", moved, sizeof(moved));
    ok(sink_sqlite_ops.submit(s, v + 2, 1, &accepted) == 0 && accepted == 1 && o.stored == 3,
       "moved: the next write is stored too");
    ok(query_file(moved, "SELECT count(*) FROM messages WHERE origin = 8") == 2,
       "moved: the renamed file keeps the two rows written before");
    ok(query_file(path, "SELECT count(*) FROM messages") == 1 &&
           query_file(path, "SELECT seq FROM messages") == 3,
       "moved: the next row went to a new database at the path");
    if (unlink(path) != 0) {
        bail_out("unlink %s", path);
    }
    ok(sink_sqlite_ops.submit(s, v + 3, 1, &accepted) == 0 && accepted == 1 && o.stored == 4,
       "deleted: the next write is stored too");
    ok(query_file(path, "SELECT count(*) FROM messages") == 1 &&
           query_file(path, "SELECT seq FROM messages") == 4,
       "deleted: the next row went to a new database at the path");
    sink_sqlite_ops.close(s);
    msg_destroy_batch(v, 4);
}

/*
 * The database renamed while another connection reads it (a transaction
 * open): its WAL cannot be emptied, and a new database at the path would
 * throw it away, so the writes fail (-EBUSY: retried), rather than go to a
 * file no longer at the path, and a SIGHUP says -EBUSY.  Once the reader
 * is gone the writer lets go of the renamed file, which keeps its rows.
 */
static void
test_moved_reader(void)
{
    struct outcomes o = { 0 };
    void *s = open_sink(&o);
    sqlite3 *rd = reader();
    char moved[300];
    struct msg *v[4];
    size_t accepted = 0;

    make_msgs(v, 4, "q", 9, 1);
    ok(sink_sqlite_ops.submit(s, v, 2, &accepted) == 0 && o.stored == 2,
       "moved, read: two rows written before");
    ok(sqlite3_exec(rd, "BEGIN; SELECT count(*) FROM messages", NULL, NULL, NULL) == SQLITE_OK,
       "moved, read: a reader holds a read transaction");
    move_db(".3", moved, sizeof(moved));
    ok(sink_sqlite_ops.submit(s, v + 2, 1, &accepted) == -EBUSY && o.stored == 2 &&
           o.retried == 1 && writer.is_leave_failing,
       "moved, read: the next write fails, SINK_RETRY -EBUSY (the WAL cannot be emptied)");
    ok(sink_sqlite_ops.reopen(s) == -EBUSY && writer.db != NULL,
       "moved, read: SIGHUP meanwhile: -EBUSY, still the renamed file");
    sqlite3_exec(rd, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(rd);
    writer.leave_next_ms = 0; /* rather than wait the second */
    ok(sink_sqlite_ops.submit(s, v + 2, 2, &accepted) == 0 && o.stored == 4 &&
           !writer.is_leave_failing,
       "moved, read: the reader gone, the two rows are stored");
    ok(query_file(moved, "SELECT count(*) FROM messages WHERE origin = 9") == 2,
       "moved, read: the renamed file has the two rows written before");
    ok(query_file(path, "SELECT count(*) FROM messages") == 2 &&
           query_file(path, "SELECT min(seq) FROM messages") == 3,
       "moved, read: the rows after went to a new database at the path");
    sink_sqlite_ops.close(s);
    msg_destroy_batch(v, 4);
}

/*
 * A WAL with commits and no database beside it (one renamed while its
 * writer had it open, and the writer killed): open refuses the path rather
 * than make a new database there, which would throw those commits away.
 */
static void
test_orphan_wal(void)
{
    struct outcomes o = { 0 };
    sqlite3 *db = reader();
    char moved[300], wal[300];
    void *s = NULL;

    ok(sqlite3_exec(db, "PRAGMA wal_autocheckpoint = 0; DELETE FROM messages", NULL, NULL, NULL) ==
           SQLITE_OK,
       "orphan: a commit that stays in the WAL");
    move_db(".4", moved, sizeof(moved));
    snprintf(wal, sizeof(wal), "%s-wal", path);
    ok(sink_sqlite_ops.open(&env, record, &o, &s) == -EEXIST && s == NULL,
       "orphan: open refuses a path with no database and a WAL that holds commits");
    sqlite3_close(db);
    if (unlink(wal) != 0 && errno != ENOENT) {
        bail_out("unlink %s", wal);
    }
    ok(sink_sqlite_ops.open(&env, record, &o, &s) == 0 && s != NULL,
       "orphan: the WAL gone, open makes a new database");
    sink_sqlite_ops.close(s);
}

/*
 * The same through a symbolic link: SQLite names the WAL after the file
 * the link leads to, and so must the check, the link now leading nowhere.
 */
static void
test_orphan_wal_link(void)
{
    struct outcomes o = { 0 };
    char link[300], real[300], moved[310], wal[310];
    sqlite3 *db;
    void *s = NULL;

    snprintf(link, sizeof(link), "%s/link.db", dir);
    snprintf(real, sizeof(real), "%s/real.db", dir);
    snprintf(moved, sizeof(moved), "%s.old", real);
    snprintf(wal, sizeof(wal), "%s-wal", real);
    if (symlink("real.db", link) != 0 || sqlite3_open(link, &db) != SQLITE_OK) {
        bail_out("symlink or open %s", link);
    }
    ok(sqlite3_exec(db,
                    "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;"
                    "CREATE TABLE t (x); INSERT INTO t VALUES (1)",
                    NULL, NULL, NULL) == SQLITE_OK,
       "orphan, link: a commit that stays in the WAL of the linked file");
    if (rename(real, moved) != 0) {
        bail_out("rename %s", real);
    }
    cfg.sqlite_path = link;
    ok(sink_sqlite_ops.open(&env, record, &o, &s) == -EEXIST && s == NULL,
       "orphan, link: open refuses it (the WAL named after the link's target)");
    cfg.sqlite_path = path;
    sqlite3_close(db);
    unlink(wal);
}

static void
test_bad_table(void)
{
    struct outcomes o = { 0 };
    sqlite3 *db = reader();
    void *s = NULL;
    char *saved = cfg.sqlite_table;

    sqlite3_exec(db, "CREATE TABLE other (a INTEGER)", NULL, NULL, NULL);
    sqlite3_close(db);
    cfg.sqlite_table = (char *)"other";
    ok(sink_sqlite_ops.open(&env, record, &o, &s) == -EPROTO && s == NULL,
       "open: a table of other columns is an error (-EPROTO)");
    cfg.sqlite_table = (char *)"select";
    ok(sink_sqlite_ops.open(&env, record, &o, &s) == 0 && s != NULL,
       "open: a keyword as table name works (quoted)");
    sink_sqlite_ops.close(s);
    cfg.sqlite_table = saved;
    sink_sqlite_ops.close(NULL);
}

int
main(void)
{
    if (!mkdtemp(dir)) {
        bail_out("mkdtemp");
    }
    snprintf(path, sizeof(path), "%s/messages.db", dir);
    if (conf_init_defaults(&cfg) < 0) {
        bail_out("conf_init_defaults");
    }
    free(cfg.sqlite_path);
    cfg.sqlite_path = path;
    cfg.sqlite_synchronous = CONF_SQLSYNC_NORMAL;
    cfg.output_batch = 4;
    test_rows();
    test_locked();
    test_window_abort();
    cfg.output_batch = THREAD_BATCH;
    test_threads();
    test_reopen();
    test_moved();
    test_moved_reader();
    test_orphan_wal();
    test_orphan_wal_link();
    test_bad_table();
    cfg.sqlite_path = NULL;
    conf_free(&cfg);
    {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            diag("could not remove %s", dir);
        }
    }
    return done_testing();
}
