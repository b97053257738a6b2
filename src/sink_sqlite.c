/*
 * sink_sqlite.c - the sqlite sink: one row per message in an SQLite
 * database (README.md, "The sqlite sink").
 *
 * Rows.  The table (sqlite.table, created if absent) has the columns
 * origin, seq, received_at (Unix ms), parts and body, and the primary key
 * (origin, seq).  origin is stored as a signed 64-bit integer: the bits of
 * the unsigned origin.  The insert skips a row whose (origin, seq) is there
 * already, so a batch written again (after an error, or replayed from a
 * spill file after a crash) stores each message once.
 *
 * Transactions.  A batch is one transaction, BEGIN IMMEDIATE ... COMMIT,
 * and its messages are reported stored only once COMMIT returned
 * SQLITE_DONE.  On any error the transaction is rolled back and the batch
 * is reported SINK_RETRY with the error (SQLITE_BUSY -EBUSY, SQLITE_FULL
 * -ENOSPC, I/O -EIO, ...), for the consumer to write again after its
 * backoff, or to spill.
 *
 * One writer.  SQLite lets one connection write a database at a time:
 * consumer threads with a connection each would make each other's writes
 * fail with SQLITE_BUSY, or spin in a busy handler.  So the instances of
 * this process share one connection, the writer, and take turns on it
 * under one mutex, write_lock, held from BEGIN to COMMIT.  One connection
 * also keeps its page cache from one transaction to the next: a
 * connection that finds the database changed by another at BEGIN starts
 * from an empty cache.  submit() only tries the lock; a batch that did
 * not get its turn stays in flight, and what the consumer offers meanwhile
 * joins it (up to output.batch messages), so while one thread commits the
 * others gather larger transactions: a group commit.  poll() waits for the
 * turn in the consumer's bounded steps.  SQLITE_BUSY is then another
 * process writing (or holding a lock): busy_timeout waits at most
 * BUSY_TIMEOUT_MS for it, then the batch fails and the consumer backs off.
 *
 * Readers.  The database is in WAL mode (persistent in the file), so
 * readers in other processes never block the writer, nor it them.  With
 * synchronous = full the WAL is synced at every COMMIT; with normal, at
 * checkpoints only (a power loss may roll back the last commits).
 *
 * Connecting.  open() connects and sets the database up (WAL, the table,
 * the prepared statements).  A database that is locked at that moment is
 * not an error: the set-up is tried again before each write.  After an
 * error other than a lock or a full disk the connection is closed and made
 * again for the next write.
 *
 * The path.  Each transaction goes to the database at sqlite.path: before
 * BEGIN the writer checks that the path still names the file it has open
 * (one stat() a transaction, small beside the system calls of SQLite).  A
 * database renamed or deleted under zpiped is let go of, and the
 * transaction goes to a new database at the path; SIGHUP (reopen()) does
 * the same at once.  The WAL is named after the path, not the file, and a
 * new database there would throw away what it holds: so the writer lets go
 * only once a checkpoint has copied every commit into the file it has open
 * and emptied the WAL (leave()), and it then removes the empty WAL and
 * shared-memory files, which a program still connected to the old file
 * would otherwise share with the new one.  While another program holds a
 * read transaction on the old file the checkpoint cannot finish: the
 * writes fail (-EBUSY, retried after the consumer's backoff) rather than
 * go to a file no longer at the path, and leave() is tried again once a
 * second.  For the same reason connect refuses a path with no database
 * but a WAL that holds commits (check_wal()): a database renamed while
 * zpiped was killed.
 */
#include "config.h"
#include "sink.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "stats.h"
#include "util.h"

/* Longest wait for a lock held by another process, inside one SQLite call. */
#define BUSY_TIMEOUT_MS 100

#define SQL_MAX 512 /* the longest statement, with a table name of CONF_IDENT_MAX */

/*
 * The writer: the process's one connection to the database and its
 * statements, shared by the instances, and used only with write_lock held
 * (from BEGIN to COMMIT or ROLLBACK, and to connect or disconnect).  Made
 * by the first open(), closed by the last close(); the instances of a
 * process share one config.
 */
struct sqlite_writer {
    const struct conf *cfg;
    sqlite3 *db;          /* NULL until connected */
    sqlite3_stmt *insert; /* with begin, commit and rollback: set once connected */
    sqlite3_stmt *begin;
    sqlite3_stmt *commit;
    sqlite3_stmt *rollback;
    dev_t dev; /* the database file connected to, if is_file_known */
    ino_t ino;
    bool is_file_known;
    bool is_leave_failing;  /* leave() could not empty the WAL (logged once) */
    uint64_t leave_next_ms; /* when leave() may try again */
    unsigned char *buf;     /* a multipart message's body, encoded */
    size_t cap;
    unsigned users;       /* open instances */
    uint64_t reopens;     /* times the connection was made anew (reopen()) */
};

static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sqlite_writer writer; /* guarded by write_lock */

struct sqlite_sink {
    sink_done_fn *done;
    void *arg;
    struct msg **pending; /* in flight: offered, not yet written */
    size_t npending;
    size_t max;           /* output.batch: the largest transaction */
    uint64_t reopens;     /* the writer's reopens this instance has seen */
};

/* map_rc maps an SQLite result code to a negative errno. */
static int
map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_SCHEMA:
    case SQLITE_ERROR:
        return -EPROTO;
    default:
        return -EIO;
    }
}

/*
 * fail logs a failed SQLite call (with SQLite's own message), counts it as
 * kind, and returns the mapped errno.
 */
static int
fail(struct sqlite_writer *w, const char *what, int rc, enum stats_sink_error kind)
{
    log_warning("sqlite: %s: %s: %s", w->cfg->sqlite_path, what,
                w->db != NULL ? sqlite3_errmsg(w->db) : sqlite3_errstr(rc));
    stats_sink_error(kind);
    return map_rc(rc);
}

/*
 * checkpoint copies every commit from the WAL into the database file the
 * connection has open and empties the WAL.  Closing does that too, but not
 * when the file was renamed or deleted since it was opened.  Returns an
 * SQLite code: SQLITE_BUSY while another connection reads (after
 * busy_timeout).
 */
static int
checkpoint(struct sqlite_writer *w)
{
    return sqlite3_wal_checkpoint_v2(w->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
}

/* disconnect closes the connection, checkpointed first (checkpoint()). */
static void
disconnect(struct sqlite_writer *w)
{
    sqlite3_finalize(w->insert);
    sqlite3_finalize(w->begin);
    sqlite3_finalize(w->commit);
    sqlite3_finalize(w->rollback);
    w->insert = w->begin = w->commit = w->rollback = NULL;
    if (w->db != NULL && checkpoint(w) != SQLITE_OK) {
        log_warning("sqlite: %s: checkpoint before closing: %s (the last commits stay in %s-wal)",
                    w->cfg->sqlite_path, sqlite3_errmsg(w->db), w->cfg->sqlite_path);
    }
    sqlite3_close_v2(w->db);
    w->db = NULL;
}

static int
prepare(struct sqlite_writer *w, const char *sql, sqlite3_stmt **out)
{
    int rc = sqlite3_prepare_v3(w->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);

    return rc == SQLITE_OK ? 0 : fail(w, sql, rc, STATS_SINK_ERROR_OPEN);
}

/* run runs a statement that returns no row (or whose rows do not matter). */
static int
run(struct sqlite_writer *w, const char *sql)
{
    int rc = sqlite3_exec(w->db, sql, NULL, NULL, NULL);

    return rc == SQLITE_OK ? 0 : fail(w, sql, rc, STATS_SINK_ERROR_OPEN);
}

/* set_wal puts the database in WAL mode, or fails when it cannot be (-ENOTSUP). */
static int
set_wal(struct sqlite_writer *w)
{
    sqlite3_stmt *st;
    const unsigned char *mode;
    int err, rc;

    err = prepare(w, "PRAGMA journal_mode = WAL", &st);
    if (err < 0) {
        return err;
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        err = fail(w, "PRAGMA journal_mode = WAL", rc, STATS_SINK_ERROR_OPEN);
    } else if ((mode = sqlite3_column_text(st, 0)) == NULL ||
               strcmp((const char *)mode, "wal") != 0) {
        log_error("sqlite: %s: cannot use WAL mode (journal mode stays %s)",
                  w->cfg->sqlite_path, mode != NULL ? (const char *)mode : "unknown");
        stats_sink_error(STATS_SINK_ERROR_OPEN);
        err = -ENOTSUP;
    }
    sqlite3_finalize(st);
    return err;
}

/*
 * side_name puts in out the name of the file SQLite keeps beside the
 * database at path with suffix ("-wal", "-shm"): after the file a symbolic
 * link at path leads to, as SQLite resolves it, even one that leads
 * nowhere yet.  Returns 0 or -ENAMETOOLONG.
 */
static int
side_name(const char *path, const char *suffix, char *out, size_t len)
{
    char cur[PATH_MAX], link[PATH_MAX];

    if (snprintf(cur, sizeof(cur), "%s", path) >= (int)sizeof(cur)) {
        return -ENAMETOOLONG;
    }
    for (int i = 0; i < 40; i++) { /* SQLite gives up on a loop too */
        ssize_t n = readlink(cur, link, sizeof(link) - 1);
        const char *slash = strrchr(cur, '/');
        size_t dir;

        if (n < 0) {
            break; /* not a link (or nothing there): cur is the name */
        }
        link[n] = '\0';
        /* A relative target is relative to the link's directory. */
        dir = link[0] == '/' || !slash ? 0 : (size_t)(slash - cur) + 1;
        if (dir + (size_t)n >= sizeof(cur)) {
            return -ENAMETOOLONG;
        }
        memcpy(cur + dir, link, (size_t)n + 1);
    }
    return snprintf(out, len, "%s%s", cur, suffix) >= (int)len ? -ENAMETOOLONG : 0;
}

/*
 * check_wal refuses a path with no database (none, or an empty file) but
 * a WAL beside it that holds commits: those of a database renamed or
 * deleted while open, which SQLite would throw away on creating a new one.
 * Returns 0 or -EEXIST (logged).
 */
static int
check_wal(struct sqlite_writer *w)
{
    const char *path = w->cfg->sqlite_path;
    char wal[PATH_MAX];
    struct stat st;

    if ((stat(path, &st) == 0 && st.st_size > 0) || side_name(path, "-wal", wal, sizeof(wal)) < 0 ||
        stat(wal, &st) < 0 || st.st_size == 0) {
        return 0;
    }
    log_error("sqlite: %s has no database but %s holds %jd bytes of commits, which a new "
              "database would throw away: the database was renamed or deleted while zpiped had "
              "it open.  Rename %s after the database it belongs to (NAME-wal) and open that "
              "with sqlite3 to recover them, or delete it",
              path, wal, (intmax_t)st.st_size, wal);
    stats_sink_error(STATS_SINK_ERROR_OPEN);
    return -EEXIST;
}

/*
 * connect opens the database and sets it up: WAL, synchronous, the table
 * if absent, the statements.  Returns 0 (also when already connected) or
 * a negative errno, and then leaves the writer unconnected.  Called with
 * write_lock held.
 */
static int
connect_locked(struct sqlite_writer *w)
{
    const struct conf *cfg = w->cfg;
    char sql[SQL_MAX];
    struct stat st;
    int err, rc;

    if (w->db != NULL) {
        return 0;
    }
    err = check_wal(w);
    if (err < 0) {
        return err;
    }
    /* NOMUTEX: write_lock serialises the connection's users. */
    rc = sqlite3_open_v2(cfg->sqlite_path, &w->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err = fail(w, "open", rc, STATS_SINK_ERROR_OPEN);
        goto fail;
    }
    sqlite3_busy_timeout(w->db, BUSY_TIMEOUT_MS);
    err = set_wal(w);
    if (err < 0) {
        goto fail;
    }
    err = run(w, cfg->sqlite_synchronous == CONF_SQLSYNC_FULL ? "PRAGMA synchronous = FULL"
                                                              : "PRAGMA synchronous = NORMAL");
    if (err < 0) {
        goto fail;
    }
    /* The name is an identifier checked by conf (letters, digits, '_'):
     * quoted, it can be any of them, even an SQL keyword. */
    snprintf(sql, sizeof(sql),
             "CREATE TABLE IF NOT EXISTS \"%s\" (origin INTEGER NOT NULL, seq INTEGER NOT NULL,"
             " received_at INTEGER NOT NULL, parts INTEGER NOT NULL, body BLOB NOT NULL,"
             " PRIMARY KEY (origin, seq))",
             cfg->sqlite_table);
    err = run(w, sql);
    if (err < 0) {
        goto fail;
    }
    snprintf(sql, sizeof(sql),
             "INSERT INTO \"%s\" (origin, seq, received_at, parts, body)"
             " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (origin, seq) DO NOTHING",
             cfg->sqlite_table);
    err = prepare(w, sql, &w->insert);
    if (err == 0) {
        err = prepare(w, "BEGIN IMMEDIATE", &w->begin);
    }
    if (err == 0) {
        err = prepare(w, "COMMIT", &w->commit);
    }
    if (err == 0) {
        err = prepare(w, "ROLLBACK", &w->rollback);
    }
    if (err < 0) {
        goto fail;
    }
    /* The file exists now: setting WAL mode wrote its header. */
    w->is_file_known = stat(cfg->sqlite_path, &st) == 0;
    if (w->is_file_known) {
        w->dev = st.st_dev;
        w->ino = st.st_ino;
    }
    return 0;
fail:
    disconnect(w);
    return err;
}

/*
 * moved tells whether sqlite.path no longer names the database the writer
 * has open: renamed or deleted (or replaced) since it connected.  A path
 * it cannot stat for another reason counts as unmoved: the next connect
 * would fail on it too.
 */
static bool
moved(const struct sqlite_writer *w)
{
    struct stat st;

    if (w->db == NULL || !w->is_file_known) {
        return false;
    }
    if (stat(w->cfg->sqlite_path, &st) < 0) {
        return errno == ENOENT;
    }
    return st.st_dev != w->dev || st.st_ino != w->ino;
}

/*
 * remove_side_files removes the WAL and shared-memory files at the path
 * once the writer let go of a database moved away from it, if the WAL is
 * empty: a program still connected to the old file keeps them open, and a
 * new database at the path must not share them.
 */
static void
remove_side_files(const struct sqlite_writer *w)
{
    char wal[PATH_MAX], shm[PATH_MAX];
    struct stat st;

    if (side_name(w->cfg->sqlite_path, "-wal", wal, sizeof(wal)) == 0 &&
        side_name(w->cfg->sqlite_path, "-shm", shm, sizeof(shm)) == 0 && stat(wal, &st) == 0 &&
        st.st_size == 0) {
        (void)unlink(wal);
        (void)unlink(shm);
    }
}

/*
 * leave lets go of the database the writer has open, for a new one at the
 * path, once its WAL is empty (checkpoint()).  Otherwise the writer keeps
 * it, and leave() tries again a second later.  Returns whether it let go.
 */
static bool
leave(struct sqlite_writer *w, const char *why)
{
    uint64_t now = util_now_ms();
    int rc;

    if (now < w->leave_next_ms) {
        return false;
    }
    rc = checkpoint(w);
    if (rc != SQLITE_OK) {
        if (!w->is_leave_failing) {
            log_warning("sqlite: %s %s, but its WAL cannot be emptied (%s: another program "
                        "reading it?): the writes wait, trying again every second",
                        w->cfg->sqlite_path, why, sqlite3_errmsg(w->db));
        }
        w->is_leave_failing = true;
        w->leave_next_ms = now + 1000;
        return false;
    }
    log_warning("sqlite: %s %s: the rows committed so far stay with that file; writing to a new "
                "database at the path",
                w->cfg->sqlite_path, why);
    w->is_leave_failing = false;
    disconnect(w);
    remove_side_files(w);
    return true;
}

/* step runs a prepared statement that returns no row, and resets it. */
static int
step(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* insert binds m to the insert statement and runs it. Returns an SQLite code. */
static int
insert(struct sqlite_writer *w, const struct msg *m)
{
    const unsigned char *body;
    size_t len;
    int rc;

    if (msg_body(m, &w->buf, &w->cap, &body, &len) < 0) {
        return SQLITE_NOMEM;
    }
    /* Unsigned to signed keeps the bits (two's complement, as GCC defines it). */
    sqlite3_bind_int64(w->insert, 1, (sqlite3_int64)m->id.origin);
    sqlite3_bind_int64(w->insert, 2, (sqlite3_int64)m->id.seq);
    sqlite3_bind_int64(w->insert, 3, (sqlite3_int64)m->received_ms);
    sqlite3_bind_int64(w->insert, 4, (sqlite3_int64)m->nframes);
    /* An empty blob through bind_blob would be NULL when body is NULL, and
     * the column is NOT NULL; the bytes are not copied (SQLITE_STATIC): the
     * statement runs now. */
    rc = len == 0 ? sqlite3_bind_zeroblob64(w->insert, 5, 0)
                  : sqlite3_bind_blob64(w->insert, 5, body, len, SQLITE_STATIC);
    if (rc == SQLITE_OK) {
        rc = step(w->insert);
    }
    return rc; /* the bindings stay: the next row sets all five again */
}

/*
 * write_locked writes the pending batch as one transaction and reports its
 * outcome.  Returns 0, or the negative errno that failed it.
 */
static int
write_locked(struct sqlite_sink *s)
{
    struct sqlite_writer *w = &writer;
    size_t n = s->npending;
    const char *what = "BEGIN";
    int err, rc;

    if (moved(w) && !leave(w, "was renamed or deleted (no SIGHUP)")) {
        err = -EBUSY; /* not into a file no longer at the path */
        goto fail;
    }
    err = connect_locked(w);
    if (err < 0) {
        goto fail;
    }
    rc = step(w->begin);
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
        what = "INSERT";
        rc = insert(w, s->pending[i]);
    }
    if (rc == SQLITE_OK) {
        what = "COMMIT";
        rc = step(w->commit);
    }
    if (rc == SQLITE_OK) {
        s->npending = 0;
        s->done(s->arg, n, SINK_STORED, 0);
        return 0;
    }
    err = fail(w, what, rc, STATS_SINK_ERROR_WRITE);
    if (!sqlite3_get_autocommit(w->db)) {
        (void)step(w->rollback);
    }
    if (err != -EBUSY && err != -ENOSPC) {
        disconnect(w); /* made again for the next write */
    }
fail:
    s->npending = 0;
    s->done(s->arg, n, SINK_RETRY, err);
    return err;
}

/* release_locked drops an instance's use of the writer; the last one closes it. */
static void
release_locked(void)
{
    if (--writer.users == 0) {
        disconnect(&writer);
        free(writer.buf);
        writer.buf = NULL;
        writer.cap = 0;
    }
}

/*
 * try_write writes the pending batch if this instance gets write_lock
 * within timeout_ms (0: only if it is free now); otherwise the batch stays
 * pending.  Returns 0 or the negative errno of a failed write.
 */
static int
try_write(struct sqlite_sink *s, int timeout_ms)
{
    int err, r;

    if (s->npending == 0) {
        return 0;
    }
    if (timeout_ms <= 0) {
        r = pthread_mutex_trylock(&write_lock);
    } else {
        struct timespec deadline;

        util_deadline_ts(CLOCK_REALTIME, (uint64_t)timeout_ms, &deadline);
        while ((r = pthread_mutex_timedlock(&write_lock, &deadline)) == EINTR) {
        }
    }
    if (r != 0) {
        return 0; /* EBUSY or ETIMEDOUT: another instance is writing */
    }
    err = write_locked(s);
    pthread_mutex_unlock(&write_lock);
    return err;
}

static int
sink_sqlite_open(const struct sink_env *env, sink_done_fn *done, void *arg, void **state)
{
    struct sqlite_sink *s = calloc(1, sizeof(*s));
    int err;

    if (s == NULL) {
        return -ENOMEM;
    }
    s->done = done;
    s->arg = arg;
    s->max = (size_t)env->cfg->output_batch;
    s->pending = calloc(s->max, sizeof(*s->pending));
    if (s->pending == NULL) {
        free(s);
        return -ENOMEM;
    }
    pthread_mutex_lock(&write_lock);
    if (writer.users++ == 0) {
        writer.cfg = env->cfg;
    }
    s->reopens = writer.reopens;
    err = connect_locked(&writer);
    /* A database locked by another process now may be free later: the
     * writes connect again.  Anything else (no such directory, not a
     * database, a table of other columns) is the operator's to fix. */
    if (err < 0 && err != -EBUSY) {
        release_locked();
        pthread_mutex_unlock(&write_lock);
        free(s->pending);
        free(s);
        return err;
    }
    pthread_mutex_unlock(&write_lock);
    if (err == -EBUSY) {
        log_warning("sqlite: %s: locked at start; will connect again before each write",
                    env->cfg->sqlite_path);
    }
    *state = s;
    return 0;
}

static int
sink_sqlite_submit(void *state, struct msg *const *msgs, size_t n, size_t *accepted)
{
    struct sqlite_sink *s = state;
    size_t k = s->max - s->npending < n ? s->max - s->npending : n;

    memcpy(s->pending + s->npending, msgs, k * sizeof(*msgs));
    s->npending += k;
    *accepted = k;
    return try_write(s, 0);
}

static int
sink_sqlite_poll(void *state, int timeout_ms)
{
    return try_write(state, timeout_ms);
}

static void
sink_sqlite_abort(void *state)
{
    struct sqlite_sink *s = state;
    size_t n = s->npending;

    /* Never half-written: a pending batch has not begun its transaction. */
    if (n > 0) {
        s->npending = 0;
        s->done(s->arg, n, SINK_RETRY, 0);
    }
}

/*
 * reopen makes the shared connection anew, once for all the instances: on
 * SIGHUP every consumer asks, and the first to ask does it unless another
 * did since this instance last asked.  A database renamed or deleted is
 * let go of only once its WAL is empty (leave()); until then reopen
 * returns -EBUSY, and the writes fail and are retried.
 */
static int
sink_sqlite_reopen(void *state)
{
    struct sqlite_sink *s = state;
    int err = 0;

    pthread_mutex_lock(&write_lock);
    if (s->reopens == writer.reopens) {
        writer.reopens++;
        writer.leave_next_ms = 0; /* now, whenever it last tried */
        if (!moved(&writer)) {
            disconnect(&writer);
        } else if (!leave(&writer, "was renamed or deleted")) {
            err = -EBUSY; /* still the old file; the writes wait and try again */
        }
        if (err == 0) {
            err = connect_locked(&writer);
        }
    }
    s->reopens = writer.reopens;
    pthread_mutex_unlock(&write_lock);
    return err;
}

static void
sink_sqlite_close(void *state)
{
    struct sqlite_sink *s = state;

    if (s == NULL) {
        return;
    }
    pthread_mutex_lock(&write_lock);
    release_locked();
    pthread_mutex_unlock(&write_lock);
    free(s->pending);
    free(s);
}

const struct sink_ops sink_sqlite_ops = {
    .name = "sqlite",
    .open = sink_sqlite_open,
    .submit = sink_sqlite_submit,
    .poll = sink_sqlite_poll,
    .abort = sink_sqlite_abort,
    .reopen = sink_sqlite_reopen,
    .close = sink_sqlite_close,
};
