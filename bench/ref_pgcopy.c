/*
 * ref_pgcopy - the reference for the postgres sink: the same rows, as a
 * bare libpq program writes them fastest.  It creates the sink's table
 * (same columns, same primary key) if absent, and writes COUNT rows of
 * SIZE-byte bodies with COPY ... FROM STDIN in the binary format, BATCH rows
 * per transaction (BEGIN, COPY, COMMIT), from one connection.
 *
 *   ref_pgcopy CONNINFO COUNT SIZE BATCH
 *
 * Prints one line: "rows=N seconds=S rows_per_s=R cpu_s=C cpu_s_per_mrow=M"
 * (C is this program's CPU only, not the server's).  Exit 0, or 1 on an error.
 */
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_clock.h"

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
exec_ok(PGconn *c, const char *sql, ExecStatusType want)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == want;

    if (!ok) {
        fprintf(stderr, "ref_pgcopy: %s: %s", sql, PQresultErrorMessage(r));
    }
    PQclear(r);
    return ok;
}

int
main(int argc, char **argv)
{
    static const unsigned char header[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";
    unsigned long long count, size, batch, seq = 0;
    unsigned char *buf, *p;
    double t0, c0, t, c;
    PGconn *conn;

    if (argc != 5) {
        fprintf(stderr, "usage: ref_pgcopy CONNINFO COUNT SIZE BATCH\n");
        return 2;
    }
    count = strtoull(argv[2], NULL, 10);
    size = strtoull(argv[3], NULL, 10);
    batch = strtoull(argv[4], NULL, 10);
    buf = malloc(sizeof(header) + 2 + batch * (2 + 3 * 12 + 8 + 4 + size));
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
    t0 = now_s();
    c0 = cpu_s();
    while (seq < count) {
        p = buf;
        memcpy(p, header, sizeof(header));
        p += sizeof(header);
        for (unsigned long long i = 0; i < batch && seq < count; i++) {
            p = put(p, 5, 2);
            p = put(put(p, 8, 4), 0x9f1c0a3e5b7d2468ull, 8);
            p = put(put(p, 8, 4), ++seq, 8);
            p = put(put(p, 8, 4), 753315200000000ull, 8);
            p = put(put(p, 4, 4), 1, 4);
            p = put(p, size, 4);
            memset(p, '.', size);
            p += size;
        }
        p = put(p, 0xffff, 2);
        if (!exec_ok(conn, "BEGIN", PGRES_COMMAND_OK) ||
            !exec_ok(conn, "COPY messages (origin, seq, received_at, parts, body) FROM STDIN"
                           " (FORMAT binary)", PGRES_COPY_IN) ||
            PQputCopyData(conn, (const char *)buf, (int)(p - buf)) != 1 ||
            PQputCopyEnd(conn, NULL) != 1) {
            fprintf(stderr, "ref_pgcopy: copy: %s", PQerrorMessage(conn));
            return 1;
        }
        PGresult *r = PQgetResult(conn);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            fprintf(stderr, "ref_pgcopy: copy: %s", PQresultErrorMessage(r));
            return 1;
        }
        PQclear(r);
        while ((r = PQgetResult(conn)) != NULL) {
            PQclear(r);
        }
        if (!exec_ok(conn, "COMMIT", PGRES_COMMAND_OK)) {
            return 1;
        }
    }
    t = now_s() - t0;
    c = cpu_s() - c0;
    printf("rows=%llu seconds=%.3f rows_per_s=%.0f cpu_s=%.3f cpu_s_per_mrow=%.3f\n", count, t,
           (double)count / t, c, c / ((double)count / 1e6));
    PQfinish(conn);
    free(buf);
    return 0;
}
