#!/bin/sh
# 305: a message too large for the NATS server does not stall the nats
# sink.  One server with max_payload 4096, a stream of 1 replica; zpiped
# (router mode, input.max_message_size 1M, one consumer thread) takes 100
# small messages, then one of 5000 bytes, then 100 small ones.  The large
# one is not published: it goes to a dead-letter file in spool_dir, as the
# exact binary record, counted as one "refused" sink error and logged with
# its size and the limit; the others reach the stream exactly once and in
# order, all 201 count as delivered, and nothing is spilled at the stop
# (without the fix the sink retried it forever: nothing after it was ever
# delivered, and the drain spilled them all).  The connect logs that
# input.max_message_size does not fit in the server's max_payload.
. "$(dirname "$0")/lib.sh"
. "$top_srcdir/tests/helpers/nats_cluster.sh"

setup
nats_test_init 1
echo "max_payload: 4096" >> "$NATS_DIR/n1.conf"
nats_start_all || bail "the server did not start"
"$JS_STREAM" create "$NATS_URLS" ZT zt.big --replicas 1 --dupe-window 5m ||
    bail "could not create the stream"
write_config "$ZP_CONF" input.mode=router output.sink=nats output.threads=1 output.batch=64 \
    "nats.servers=$NATS_SERVERS" nats.subject=zt.big daemon.drain_timeout=5s
start_zpiped || bail "zpiped did not start"
check "the connect warns: max_message_size does not fit in max_payload" \
    wait_until 60 "the max_payload warning" grep -q \
    'input.max_message_size (1048576 bytes) and [0-9]* bytes of headers do not fit in the server.s max_payload (4096 bytes)' \
    "$ZP_LOG"

# The large message: "big-" and 4996 x, 5000 bytes, one frame.
big=$(printf 'big-%04996d' 0 | tr 0 x)
printf '%s\n' "$big" > "$ZP_TMP/big"
start_client before dealer -n 100 -s 50 -p before- --window 100 "$ZP_EP"
check "the client gets OK for the first 100" wait_clients 60
start_client big dealer --records "$ZP_TMP/big" --window 1 "$ZP_EP"
check "the client gets OK for the large one" wait_clients 60
start_client after dealer -n 100 -s 50 -p after- --window 100 "$ZP_EP"
check "the client gets OK for the last 100" wait_clients 60
delivered_all() {
    [ "$(status_field delivered)" = 201 ]
}
check "zpiped delivers all 201: the large one does not stall the rest" \
    wait_until 60 "delivered 201" delivered_all
refused_is_1() {
    "$ZPIPE" stats -s "$ZP_TMP/ctl.sock" --json | jq -e '.sink.errors.refused == 1' > /dev/null
}
check "zpipe stats counts 1 refused sink error" refused_is_1
stop_zpiped
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "accounting: 201 delivered, none spilled" \
    check_accounting received=201 delivered=201 spilled=0
check "no spill file" test -z "$(find "$ZP_TMP/spool" -name 'spill-*')"
check "no error lines in the log" check_log
check "the log names the size and the limit" grep -q \
    "nats: a message of [0-9]* bytes with its headers is larger than the server's max_payload of 4096 bytes (1 so far): it goes to the dead-letter file" \
    "$ZP_LOG"
check "the log names the dead-letter file" grep -q \
    "nats: messages too large for the server or the stream go to $ZP_TMP/spool/deadletter-" "$ZP_LOG"

"$JS_STREAM" dump "$NATS_URLS" ZT > "$ZP_TMP/dump" || bail "js_stream dump failed"
cut -f3 "$ZP_TMP/dump" > "$ZP_TMP/stored"
{
    "$ZMQ_CLIENT" gen -n 100 -s 50 -p before-
    "$ZMQ_CLIENT" gen -n 100 -s 50 -p after-
} > "$ZP_TMP/sent"
check "the stream holds the 200 others exactly once, in order" cmp -s "$ZP_TMP/sent" "$ZP_TMP/stored"
set -- "$ZP_TMP"/spool/deadletter-*.zpd
check "one dead-letter file ($(basename "$1"))" test $# -eq 1 -a -f "$1"
# The binary record: the length 5000 (00 00 13 88) and the payload.
{
    printf '\000\000\023\210'
    printf '%s' "$big"
} > "$ZP_TMP/big.record"
check "it holds the large message's record exactly" cmp -s "$ZP_TMP/big.record" "$1"
done_testing
