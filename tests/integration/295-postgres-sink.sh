#!/bin/sh
# 295: the postgres sink, on a private PostgreSQL cluster started by the
# test (tests/helpers/pg_cluster.sh: initdb and pg_ctl, as an unprivileged
# user, on a unix socket in the test's directory).
#
# 1. The server down when zpiped starts: zpiped is ready all the same, logs
#    it and counts it in zpipe stats; once the server is up, every message
#    is stored, once, with the run's origin, seq, received_at, parts, body.
# 2. Router clients with ack = stored while the server is restarted
#    (pg_ctl restart -m immediate) and while zpiped's connections are
#    killed (pg_terminate_backend): every message is one row, once; every
#    message answered OK is a row.
# 3. The server down at the drain: it times out and spills; with the server
#    back, a restart replays the spill: every message once, with its first
#    identity.
. "${top_srcdir:-.}/tests/integration/lib.sh"

setup
if ! grep -q '^#define HAVE_LIBPQ 1' "$top_builddir/config.h"; then
    echo "1..0 # SKIP zpiped built without the postgres sink"
    exit 0
fi
PG=$ZP_TMP/pg
PGC=$top_srcdir/tests/helpers/pg_cluster.sh
sh "$PGC" start "$PG" > "$ZP_TMP/pg.out" 2>&1
case $? in
0) ;;
77)
    echo "1..0 # SKIP no PostgreSQL 15 server (Debian package postgresql)"
    exit 0
    ;;
*)
    cat "$ZP_TMP/pg.out" | sed 's/^/# /'
    bail "could not start a PostgreSQL cluster"
    ;;
esac
# The cluster goes before the temp dir (lib.sh's EXIT trap removes it).
stop_cluster() {
    _rc=$?
    sh "$PGC" crash "$PG" > /dev/null 2>&1
    (exit $_rc)
    zp_cleanup
}
trap stop_cluster EXIT
# The consumer logs a streak of failed writes (a lost connection) as an error.
ALLOW='sink postgres: consumer [0-9]+: write: (Connection reset by peer|Input/output error)'
CONNINFO="host=$PG dbname=zpipe user=zpipe application_name=zpiped connect_timeout=10"

q() {
    sh "$PGC" psql "$PG" -At -c "$1"
}
pg() {
    sh "$PGC" "$1" "$PG" > "$ZP_TMP/pg.out" 2>&1 || { sed 's/^/# /' "$ZP_TMP/pg.out"; return 1; }
}
rows() {
    q "select count(*) from messages" 2> /dev/null
}
origin_of() {
    sed -n 's/.*message origin \([0-9a-f]\{16\}\)$/\1/p' "$1"
}
# A bigint origin as 16 hex digits (two's complement).
ORIGIN_HEX="lpad(to_hex(min(origin)), 16, '0')"
N=10000

# ---- 1: the server down at start.
pg stop || bail "pg_ctl stop failed"
write_config "$ZP_CONF" input.mode=router output.sink=postgres output.threads=2 output.batch=128 \
    "postgres.conninfo=$CONNINFO" postgres.table=messages
start_zpiped || bail "zpiped did not start with the server down"
ok "zpiped is ready with the server down (not a config error)"
cannot_connect() {
    grep -q 'postgres: cannot connect' "$ZP_LOG"
}
check "the log says it cannot connect" wait_until 30 "the log line" cannot_connect
open_errors() {
    [ "$(stats_field sink.errors.open)" -gt 0 ] 2> /dev/null
}
check "zpipe stats counts the failed connections" wait_until 30 "open errors" open_errors
start_client first dealer -n $N -s 100 -p first- --frames 2 --window 200 --out "$ZP_TMP/ok.first" \
    "$ZP_EP"
pg start || bail "the server did not start"
check "the clients get OK for all $N once the server is up" wait_clients 300
stored_all() {
    [ "$(rows)" = $N ]
}
check "all $N are rows" wait_until 60 "the rows" stored_all
origin=$(origin_of "$ZP_LOG")
stop_zpiped
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "accounting: received = delivered = $N" check_accounting received=$N delivered=$N spilled=0
check "no error lines in the log but the failed writes" check_log "$ZP_LOG" "$ALLOW"
check "one origin (the run's, $origin), seq 1..$N, received_at now, parts 2" \
    test "$(q "select count(*), count(distinct seq), min(seq), max(seq), $ORIGIN_HEX,
               count(*) filter (where received_at > now() - interval '10 minutes'),
               min(parts), max(parts) from messages")" = "$N|$N|1|$N|$origin|$N|2|2"
# 2 frames: payload, "": MORE|len, payload, 0.
q "select convert_from(substring(body from 5 for length(body) - 8), 'UTF8') || '|' from messages
   where substring(body from 1 for 4) = int4send((length(body) - 8) | (-2147483648))
   and substring(body from length(body) - 3) = '\\x00000000'::bytea" > "$ZP_TMP/rows.first"
"$ZMQ_CLIENT" gen -n $N -s 100 -p first- --frames 2 > "$ZP_TMP/sent.first"
check "the bodies: the frames in the binary record format, each message once" \
    same_messages "$ZP_TMP/sent.first" "$ZP_TMP/rows.first"

# ---- 2: restart -m immediate and pg_terminate_backend under load.
q "truncate messages"
M=60000
write_config "$ZP_CONF" input.mode=router input.ack=stored output.sink=postgres output.threads=2 \
    output.batch=128 "postgres.conninfo=$CONNINFO"
start_zpiped || bail "zpiped did not start again"
start_client load dealer -n $M -s 100 -p load- --window 200 --timeout 600000 \
    --out "$ZP_TMP/ok.load" "$ZP_EP"
rows_at_least() {
    [ "$(rows)" -ge "$1" ] 2> /dev/null
}
wait_until 120 "10000 rows" rows_at_least 10000 || diag "slow load"
check "the server restarts mid-stream (pg_ctl restart -m immediate)" pg restart
wait_until 120 "30000 rows" rows_at_least 30000 || diag "slow load"
killed=$(q "select count(pg_terminate_backend(pid)) from pg_stat_activity
            where application_name = 'zpiped'")
check "zpiped's connections are terminated mid-stream ($killed)" test "${killed:-0}" -gt 0
check "the client gets OK for all $M" wait_clients 600
lost_again() {
    grep -q 'postgres: connected again' "$ZP_LOG"
}
check "zpiped logged that it connected again" lost_again
stop_zpiped
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "accounting: received = delivered = $M" check_accounting received=$M delivered=$M spilled=0
check "no error lines in the log but the failed writes" check_log "$ZP_LOG" "$ALLOW"
q "select convert_from(body, 'UTF8') from messages" > "$ZP_TMP/rows.load"
"$ZMQ_CLIENT" gen -n $M -s 100 -p load- > "$ZP_TMP/sent.load"
check "every message is one row, once" same_messages "$ZP_TMP/sent.load" "$ZP_TMP/rows.load"
check "every message answered OK is a row" subset_of "$ZP_TMP/rows.load" "$ZP_TMP/ok.load"

# ---- 3: a drain timeout with the server down, then the replay.
q "truncate messages"
K=5000
write_config "$ZP_CONF" input.mode=router output.sink=postgres output.threads=2 output.batch=128 \
    "postgres.conninfo=$CONNINFO" daemon.drain_timeout=2s
start_zpiped || bail "zpiped did not start a third time"
pg stop || bail "pg_ctl stop failed"
start_client down dealer -n $K -s 100 -p down- --window 200 --out "$ZP_TMP/ok.down" "$ZP_EP"
check "the client gets OK for all $K (ack = queued) with the server down" wait_clients 300
stop_zpiped TERM 120
check "SIGTERM: exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "the drain timed out and spilled all $K" check_accounting received=$K spilled=$K
check "no error lines in the log but the failed writes" check_log "$ZP_LOG" "$ALLOW"
first_origin=$(origin_of "$ZP_LOG")
pg start || bail "the server did not start"
start_zpiped || bail "zpiped did not start for the replay"
check "the replay empties the spool" wait_until 120 "the spill files" replay_done
replayed_all() {
    [ "$(rows)" = $K ]
}
check "all $K are rows" wait_until 120 "the rows" replayed_all
stop_zpiped
check "exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "accounting: replayed = delivered = $K" check_accounting replayed=$K delivered=$K
check "no error lines in the log but the failed writes" check_log "$ZP_LOG" "$ALLOW"
q "select convert_from(body, 'UTF8') from messages" > "$ZP_TMP/rows.down"
"$ZMQ_CLIENT" gen -n $K -s 100 -p down- > "$ZP_TMP/sent.down"
check "every message is one row, once" same_messages "$ZP_TMP/sent.down" "$ZP_TMP/rows.down"
check "... with the identity given by the run that spilled it ($first_origin, seq 1..$K)" \
    test "$(q "select count(distinct origin), $ORIGIN_HEX, count(distinct seq), min(seq), max(seq)
               from messages")" = "1|$first_origin|$K|1|$K"
done_testing
