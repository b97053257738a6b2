/*
 * ref_pgcopy - the reference for the postgres sink: the same rows, as a
 * bare libpq program writes them fastest.  It creates the sink's table
 * (same columns, same primary key) if absent, and writes COUNT rows of
 * SIZE-byte bodies, BATCH rows per transaction, from one connection, in
 * one of three ways (MODE, copy by default):
 *
 *   copy      BEGIN, COPY ... FROM STDIN (FORMAT binary), COMMIT: the
 *             fastest, and what the sink does first; a row already there
 *             fails the whole COPY
 *   temp      BEGIN, COPY into a temporary table, INSERT ... SELECT ... ON
 *             CONFLICT DO NOTHING, COMMIT: idempotent (the sink's way for a
 *             batch written again)
 *   pipeline  libpq's pipeline mode: BEGIN, one prepared INSERT ... ON
 *             CONFLICT DO NOTHING per row (binary parameters), COMMIT, then
 *             a sync: idempotent, one round trip per batch
 *
 *   ref_pgcopy CONNINFO COUNT SIZE BATCH [copy|temp|pipeline]
 *
 * The first row's seq is 1, so a second run into the same table writes
 * every row again (the replay case; only temp and pipeline can).
 * Prints one line: "rows=N seconds=S rows_per_s=R cpu_s=C cpu_s_per_mrow=M"
 * (C is this program's CPU only, not the server's).  Exit 0, or 1 on an error.
 */
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_clock.h"

#define ORIGIN   0x9f1c0a3e5b7d2468ull
#define RECEIVED 753315200000000ull /* microseconds since 2000-01-01 */
#define INSERT                                                                                     \
    " (origin, seq, received_at, parts, body) VALUES ($1, $2, $3, $4, $5)"                         \
    " ON CONFLICT (origin, seq) DO NOTHING"

static unsigned char *
put(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        p[i] = (unsigned char)v;
        v >>= 8;
    }
    return p + bytes;
}

static int
check(PGresult *r, const char *what, ExecStatusType want)
{
    int ok = PQresultStatus(r) == want;

    if (!ok) {
        fprintf(stderr, "ref_pgcopy: %s: %s", what, PQresultErrorMessage(r));
    }
    PQclear(r);
    return ok;
}

static int
exec_ok(PGconn *c, const char *sql, ExecStatusType want)
{
    return check(PQexec(c, sql), sql, want);
}

/* copy_batch copies rows first+1.. (n of them) into table, in the binary format. */
static int
copy_batch(PGconn *c, const char *table, unsigned char *buf, uint64_t first, uint64_t n,
           uint64_t size)
{
    static const unsigned char header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
    char sql[160];
    unsigned char *p = buf;
    PGresult *r;

    memcpy(p, header, sizeof(header));
    p += sizeof(header);
    for (uint64_t i = 1; i <= n; i++) {
        p = put(p, 5, 2);
        p = put(put(p, 8, 4), ORIGIN, 8);
        p = put(put(p, 8, 4), first + i, 8);
        p = put(put(p, 8, 4), RECEIVED, 8);
        p = put(put(p, 4, 4), 1, 4);
        p = put(p, size, 4);
        memset(p, '.', size);
        p += size;
    }
    p = put(p, 0xffff, 2);
    snprintf(sql, sizeof(sql),
             "COPY %s (origin, seq, received_at, parts, body) FROM STDIN (FORMAT binary)", table);
    if (!exec_ok(c, sql, PGRES_COPY_IN) || PQputCopyData(c, (const char *)buf, (int)(p - buf)) != 1 ||
        PQputCopyEnd(c, NULL) != 1) {
        fprintf(stderr, "ref_pgcopy: copy: %s", PQerrorMessage(c));
        return 0;
    }
    if (!check(PQgetResult(c), "copy", PGRES_COMMAND_OK)) {
        return 0;
    }
    while ((r = PQgetResult(c)) != NULL) {
        PQclear(r);
    }
    return 1;
}

/* pipeline_batch sends rows first+1.. (n of them) in one pipelined transaction. */
static int
pipeline_batch(PGconn *c, unsigned char *body, uint64_t first, uint64_t n, uint64_t size)
{
    unsigned char origin[8], seq[8], received[8], parts[4];
    const char *values[5] = { (char *)origin, (char *)seq, (char *)received, (char *)parts,
                              (char *)body };
    int lengths[5] = { 8, 8, 8, 4, (int)size }, formats[5] = { 1, 1, 1, 1, 1 };
    uint64_t results = n + 2;
    PGresult *r;

    put(origin, ORIGIN, 8);
    put(received, RECEIVED, 8);
    put(parts, 1, 4);
    if (!PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0)) {
        goto fail;
    }
    for (uint64_t i = 1; i <= n; i++) {
        put(seq, first + i, 8);
        if (!PQsendQueryPrepared(c, "ins", 5, values, lengths, formats, 0)) {
            goto fail;
        }
    }
    if (!PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) || !PQpipelineSync(c)) {
        goto fail;
    }
    /* Each statement's result, a NULL after each, then the sync's. */
    while (results > 0) {
        r = PQgetResult(c);
        if (r == NULL) {
            continue;
        }
        if (!check(r, "pipeline", PGRES_COMMAND_OK)) {
            return 0;
        }
        results--;
    }
    r = PQgetResult(c);
    if (r == NULL) {
        r = PQgetResult(c);
    }
    return check(r, "sync", PGRES_PIPELINE_SYNC);
fail:
    fprintf(stderr, "ref_pgcopy: pipeline: %s", PQerrorMessage(c));
    return 0;
}

int
main(int argc, char **argv)
{
    unsigned long long count, size, batch, seq = 0;
    const char *mode = argc > 5 ? argv[5] : "copy";
    unsigned char *buf;
    double t0, c0, t, c;
    PGconn *conn;

    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: ref_pgcopy CONNINFO COUNT SIZE BATCH [copy|temp|pipeline]\n");
        return 2;
    }
    count = strtoull(argv[2], NULL, 10);
    size = strtoull(argv[3], NULL, 10);
    batch = strtoull(argv[4], NULL, 10);
    buf = malloc(19 + 2 + batch * (2 + 3 * 12 + 8 + 4 + size));
    conn = PQconnectdb(argv[1]);
    if (!buf || batch == 0 || PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "ref_pgcopy: %s", PQerrorMessage(conn));
        return 1;
    }
    if (!exec_ok(conn, "CREATE TABLE IF NOT EXISTS messages (origin bigint NOT NULL,"
                       " seq bigint NOT NULL, received_at timestamptz NOT NULL,"
                       " parts integer NOT NULL, body bytea NOT NULL, PRIMARY KEY (origin, seq))",
                 PGRES_COMMAND_OK)) {
        return 1;
    }
    if (strcmp(mode, "temp") == 0) {
        if (!exec_ok(conn, "CREATE TEMPORARY TABLE batch (LIKE messages) ON COMMIT DELETE ROWS",
                     PGRES_COMMAND_OK)) {
            return 1;
        }
    } else if (strcmp(mode, "pipeline") == 0) {
        memset(buf, '.', size);
        if (!check(PQprepare(conn, "ins", "INSERT INTO messages" INSERT, 0, NULL), "prepare",
                   PGRES_COMMAND_OK) ||
            !PQenterPipelineMode(conn)) {
            return 1;
        }
    } else if (strcmp(mode, "copy") != 0) {
        fprintf(stderr, "ref_pgcopy: unknown mode %s\n", mode);
        return 2;
    }
    t0 = now_s();
    c0 = cpu_s();
    while (seq < count) {
        unsigned long long n = count - seq < batch ? count - seq : batch;
        int ok;

        if (mode[0] == 'p') {
            ok = pipeline_batch(conn, buf, seq, n, size);
        } else if (mode[0] == 't') {
            ok = exec_ok(conn, "BEGIN", PGRES_COMMAND_OK) &&
                 copy_batch(conn, "batch", buf, seq, n, size) &&
                 exec_ok(conn, "INSERT INTO messages SELECT * FROM batch"
                               " ON CONFLICT (origin, seq) DO NOTHING",
                         PGRES_COMMAND_OK) &&
                 exec_ok(conn, "COMMIT", PGRES_COMMAND_OK);
        } else {
            ok = exec_ok(conn, "BEGIN", PGRES_COMMAND_OK) &&
                 copy_batch(conn, "messages", buf, seq, n, size) &&
                 exec_ok(conn, "COMMIT", PGRES_COMMAND_OK);
        }
        if (!ok) {
            return 1;
        }
        seq += n;
    }
    t = now_s() - t0;
    c = cpu_s() - c0;
    printf("rows=%llu seconds=%.3f rows_per_s=%.0f cpu_s=%.3f cpu_s_per_mrow=%.3f\n", count, t,
           (double)count / t, c, c / ((double)count / 1e6));
    PQfinish(conn);
    free(buf);
    return 0;
}
