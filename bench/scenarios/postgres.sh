#!/usr/bin/env bash
# postgres - the postgres sink against bench/ref_pgcopy on a private cluster
#
# The same as sqlite for the postgres sink against bench/ref_pgcopy (binary
# COPY of 256 rows per transaction) on a private cluster started with
# tests/helpers/pg_cluster.sh (target >= 0.7).  Skipped, and said so, in a
# build without the postgres sink or without the PostgreSQL server binaries.
# Cases: SIZEB/CASE, e.g. 128B/stored (scripts/lib/bench-db.sh).

# shellcheck source=scripts/lib/bench.sh
. "$(dirname "$0")/../../scripts/lib/bench.sh"
# shellcheck source=scripts/lib/bench-db.sh
. "$top/scripts/lib/bench-db.sh"

pg_dir=
pg_conninfo=
scenario_cleanup() {
    if [ -n "$pg_dir" ]; then
        sh "$top/tests/helpers/pg_cluster.sh" stop "$pg_dir" >/dev/null 2>&1
    fi
}

ref_pgcopy_run() {
    "$bd/bench/ref_pgcopy" "$pg_conninfo" "$1" "$2" "$db_batch"
}

reset_postgres() {
    sh "$top/tests/helpers/pg_cluster.sh" psql "$pg_dir" -q -c 'drop table if exists messages' >/dev/null 2>&1
}

if [ ! -x "$bd/bench/ref_pgcopy" ]; then
    skip "this build has no postgres sink"
    exit 0
fi
pg_dir=$tmp/pg
sh "$top/tests/helpers/pg_cluster.sh" start "$pg_dir" >"$tmp/pg.err" 2>&1
rc=$?
if [ "$rc" = 77 ]; then
    pg_dir=
    skip "no PostgreSQL server binaries"
    exit 0
elif [ "$rc" != 0 ]; then
    fail_run - "postgres: the private cluster did not start: $(cat "$tmp/pg.err")"
    exit 0
fi
pg_conninfo="host=$pg_dir dbname=zpipe user=zpipe"
param runs "$runs"
param batch "$db_batch"
db_cases "" reset_postgres ref_pgcopy_run postgres.conninfo="$pg_conninfo"
