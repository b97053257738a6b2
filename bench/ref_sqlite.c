/*
 * ref_sqlite - the reference for the sqlite sink: the same rows, written
 * the same way, by a bare program with nothing around it.  It creates the
 * sink's table (same columns, same primary key) in a new database in WAL
 * mode with the given synchronous, and inserts COUNT rows of SIZE-byte
 * bodies with the sink's prepared INSERT ... ON CONFLICT DO NOTHING, BATCH
 * rows per transaction (BEGIN IMMEDIATE ... COMMIT), from one thread.
 *
 *   ref_sqlite PATH COUNT SIZE BATCH full|normal
 *
 * Prints one line: "rows=N seconds=S rows_per_s=R cpu_s=C cpu_s_per_mrow=M".
 * Exit status 0, or 1 on an error.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_clock.h"

static int
run(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "ref_sqlite: %s: %s\n", sql, sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    sqlite3 *db;
    sqlite3_stmt *ins, *begin, *commit;
    unsigned long long count, size, batch, seq = 0;
    unsigned char *body;
    double t0, c0, t, c;

    if (argc != 6) {
        fprintf(stderr, "usage: ref_sqlite PATH COUNT SIZE BATCH full|normal\n");
        return 2;
    }
    count = strtoull(argv[2], NULL, 10);
    size = strtoull(argv[3], NULL, 10);
    batch = strtoull(argv[4], NULL, 10);
    body = malloc(size + 1);
    if (!body || batch == 0 || sqlite3_open(argv[1], &db) != SQLITE_OK) {
        fprintf(stderr, "ref_sqlite: cannot open %s\n", argv[1]);
        return 1;
    }
    memset(body, '.', size);
    if (run(db, "PRAGMA journal_mode = WAL") < 0 ||
        run(db, strcmp(argv[5], "full") == 0 ? "PRAGMA synchronous = FULL"
                                             : "PRAGMA synchronous = NORMAL") < 0 ||
        run(db, "CREATE TABLE IF NOT EXISTS messages (origin INTEGER NOT NULL,"
                " seq INTEGER NOT NULL, received_at INTEGER NOT NULL, parts INTEGER NOT NULL,"
                " body BLOB NOT NULL, PRIMARY KEY (origin, seq))") < 0 ||
        sqlite3_prepare_v2(db, "INSERT INTO messages (origin, seq, received_at, parts, body)"
                               " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (origin, seq) DO NOTHING",
                           -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) != SQLITE_OK) {
        fprintf(stderr, "ref_sqlite: set-up: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    t0 = now_s();
    c0 = cpu_s();
    while (seq < count) {
        sqlite3_step(begin);
        sqlite3_reset(begin);
        for (unsigned long long i = 0; i < batch && seq < count; i++) {
            sqlite3_bind_int64(ins, 1, (sqlite3_int64)0x9f1c0a3e5b7d2468ll);
            sqlite3_bind_int64(ins, 2, (sqlite3_int64)++seq);
            sqlite3_bind_int64(ins, 3, (sqlite3_int64)1700000000000ll);
            sqlite3_bind_int64(ins, 4, 1);
            sqlite3_bind_blob64(ins, 5, body, size, SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE) {
                fprintf(stderr, "ref_sqlite: insert: %s\n", sqlite3_errmsg(db));
                return 1;
            }
            sqlite3_reset(ins);
        }
        if (sqlite3_step(commit) != SQLITE_DONE) {
            fprintf(stderr, "ref_sqlite: commit: %s\n", sqlite3_errmsg(db));
            return 1;
        }
        sqlite3_reset(commit);
    }
    t = now_s() - t0;
    c = cpu_s() - c0;
    printf("rows=%llu seconds=%.3f rows_per_s=%.0f cpu_s=%.3f cpu_s_per_mrow=%.3f\n", count, t,
           (double)count / t, c, c / ((double)count / 1e6));
    sqlite3_finalize(ins);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_close(db);
    free(body);
    return 0;
}
