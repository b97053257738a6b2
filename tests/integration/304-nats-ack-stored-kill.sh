#!/bin/sh
# 304: input.ack = stored with the nats sink: an OK means the stream has
# the message.  A 3-node cluster, a stream of 3 replicas in files; router
# mode, two pipelining DEALER clients recording every OK.  Each round starts
# zpiped, waits until a random number (1..3000) of new messages is in the
# stream, kills zpiped with SIGKILL, and then the clients: every message
# answered OK in the round is in the stream.  At the end no message is in
# the stream twice.  Then a round without the stream (deleted): zpiped
# publishes, every publish fails (no responders), and until it is killed
# no client gets an OK.
#
# ZP_KILL_ROUNDS rounds (default 3).
. "$(dirname "$0")/lib.sh"
. "$top_srcdir/tests/helpers/nats_cluster.sh"

setup
nats_test_init 3
ROUNDS=${ZP_KILL_ROUNDS:-3}
nats_start_all || bail "the cluster did not elect a metadata leader"
"$JS_STREAM" create "$NATS_URLS" ZT zt.stored --replicas 3 --dupe-window 5m ||
    bail "could not create the stream"
write_config "$ZP_CONF" input.mode=router input.ack=stored output.sink=nats output.threads=2 \
    output.batch=64 "nats.servers=$NATS_SERVERS" nats.subject=zt.stored nats.max_pending=1024 \
    daemon.stats_interval=1s

count() {
    "$JS_STREAM" count "$NATS_URLS" ZT 2> /dev/null
}
grown_by() {
    _c=$(count) && [ "$_c" -ge $(($2 + $1)) ]
}
random_below() {
    echo $(($(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % $1))
}

fails=0
r=0
while [ "$r" -lt "$ROUNDS" ]; do
    r=$((r + 1))
    fail() {
        diag "round $r: $*"
        fails=$((fails + 1))
    }
    before=$(count) || bail "cannot count the stream"
    start_zpiped || bail "round $r: zpiped did not become ready"
    cpids=
    for c in 0 1; do
        spawn "$ZMQ_CLIENT" dealer -n 100000000 -s 64 -p "r$r-c$c-" --window 300 \
            --timeout 600000 --out "$ZP_TMP/ok.$r.$c" "$ZP_EP" \
            < /dev/null > /dev/null 2> "$ZP_TMP/client.$r.$c.err"
        cpids="$cpids $zp_last_pid"
    done
    want=$(($(random_below 3000) + 1))
    wait_until 120 "$want new messages in the stream" grown_by "$want" "$before" ||
        fail "the stream did not grow by $want"
    stop_zpiped KILL 30
    [ "$ZP_STATUS" -eq 137 ] || fail "zpiped ended with status $ZP_STATUS, not by SIGKILL"
    # shellcheck disable=SC2086
    kill_wait $cpids
    check_log "$ZP_LOG" > /dev/null || fail "unexpected lines in the log"
    "$JS_STREAM" dump "$NATS_URLS" ZT > "$ZP_TMP/dump" || bail "js_stream dump failed"
    cut -f3 "$ZP_TMP/dump" > "$ZP_TMP/stored"
    oks=$(line_count "$ZP_TMP"/ok.$r.*)
    [ "$oks" -gt 0 ] || fail "no OK came before the kill"
    subset_of "$ZP_TMP/stored" "$ZP_TMP"/ok.$r.* || fail "a message answered OK is not stored"
    diag "round $r: killed with $(($(line_count "$ZP_TMP/stored") - before)) new in the" \
        "stream (wanted $want), $oks answered OK"
done

check "$ROUNDS of $ROUNDS rounds: every message answered OK was in the stream after the kill" \
    test "$fails" -eq 0
check "every message answered OK in any round is in the stream" \
    subset_of "$ZP_TMP/stored" "$ZP_TMP"/ok.*
check "no message is in the stream twice" no_duplicates "$ZP_TMP/stored"
check "no id is in the stream twice" test "$(cut -f1 "$ZP_TMP/dump" | sort | uniq -d | wc -l)" = 0

"$JS_STREAM" delete "$NATS_URLS" ZT || bail "could not delete the stream"
start_zpiped || bail "zpiped did not become ready for the round without a stream"
start_client none dealer -n 100000000 -s 64 -p none- --window 300 --timeout 600000 \
    --out "$ZP_TMP/ok.none" "$ZP_EP"
check "without the stream, publishes fail (zpipe stats counts them)" \
    wait_until 60 "sink errors" nats_sink_errors_over 10
check "... and keep failing" wait_until 60 "more sink errors" nats_sink_errors_over 100
stop_zpiped KILL 30
kill_wait $(echo "$zp_clients" | sed 's/[^ ]*://g')
zp_clients=
check "no client got an OK while there was no stream" test ! -s "$ZP_TMP/ok.none"
check "the log says no stream answers" grep -q 'nats:.*stream' "$ZP_LOG"
done_testing
