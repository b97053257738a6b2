#!/usr/bin/env bash
# sqlite - the sqlite sink against bench/ref_sqlite, rows/s and CPU, ack = queued and stored
#
# The sqlite sink against bench/ref_sqlite (the same table, pragmas and
# prepared INSERT, BEGIN IMMEDIATE ... COMMIT of 256 rows, one thread),
# 128 B and 1 KiB, synchronous = normal and full, the database on the disk
# under /tmp: rows/s end to end (pull mode under zpipe bench --hold until zpiped
# counts all delivered, i.e. committed), the ratio to the ref (target >=
# 0.8), the writer's CPU seconds per million rows; and the acked throughput
# with ack = stored (router mode, zpipe bench -r) at 128 B.  Skipped, and
# said so, in a build without the sqlite sink.
# Cases: SYNC/SIZEB/CASE, e.g. normal/128B/queued (scripts/lib/bench-db.sh).

# shellcheck source=scripts/lib/bench.sh
. "$(dirname "$0")/../../scripts/lib/bench.sh"
# shellcheck source=scripts/lib/bench-db.sh
. "$top/scripts/lib/bench-db.sh"

db_sync=
ref_sqlite_run() {
    "$bd/bench/ref_sqlite" "$tmp/bench.db" "$1" "$2" "$db_batch" "$db_sync"
}

reset_sqlite() {
    rm -f "$tmp/bench.db" "$tmp/bench.db-wal" "$tmp/bench.db-shm"
}

if [ ! -x "$bd/bench/ref_sqlite" ]; then
    skip "this build has no sqlite sink"
    exit 0
fi
param runs "$runs"
param batch "$db_batch"
param fs "$(fs_type "$tmp")"
for db_sync in normal full; do
    db_cases "$db_sync/" reset_sqlite ref_sqlite_run \
        sqlite.path="$tmp/bench.db" sqlite.synchronous="$db_sync"
done
