#!/bin/sh
# 302: the nats sink at a drain with the cluster gone.  A 3-node cluster,
# a stream of 3 replicas; zpiped (router mode, ack = queued) stores a first
# lot; then every server is killed (SIGKILL) and a second lot comes in.
# SIGTERM: the drain times out (drain_timeout 2s) and spills the second lot,
# those in flight in the sink included, and zpiped exits 0.  The servers
# come back (same stores), a new zpiped replays the spill: the stream holds
# both lots exactly once, every message with the identity of the run that
# took it in (the spilled ones keep theirs).
. "$(dirname "$0")/lib.sh"
. "$top_srcdir/tests/helpers/nats_cluster.sh"

setup
nats_test_init 3
K1=2000
K2=3000
N=$((K1 + K2))

nats_start_all || bail "the cluster did not elect a metadata leader"
"$JS_STREAM" create "$NATS_URLS" ZT zt.spill --replicas 3 --dupe-window 5m ||
    bail "could not create the stream"
write_config "$ZP_CONF" input.mode=router output.sink=nats output.threads=2 output.batch=128 \
    "nats.servers=$NATS_SERVERS" nats.subject=zt.spill nats.max_pending=1024 \
    nats.ack_timeout=2s daemon.drain_timeout=2s
start_zpiped || bail "zpiped did not start"
start_client first dealer -n $K1 -s 100 -p first- --window 200 "$ZP_EP"
check "the client gets OK for the first $K1" wait_clients 120
delivered_is() {
    [ "$(status_field delivered)" = "$1" ]
}
check "zpiped delivers the first $K1" wait_until 120 "delivered $K1" delivered_is $K1
for s in $nats_names; do
    nats_kill "$s"
done
ok "every server is killed"
start_client second dealer -n $K2 -s 100 -p second- --window 200 "$ZP_EP"
check "the client gets OK for the second $K2 (ack = queued)" wait_clients 120
stop_zpiped TERM 120
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "the drain timed out" grep -q 'drain: ended by drain_timeout' "$ZP_LOG"
check "accounting: received $N, delivered $K1, the second $K2 spilled" \
    check_accounting received=$N delivered=$K1 spilled=$K2
check "no error lines in the log but the sink's own" check_log "$ZP_LOG" 'nats'
first_log=$ZP_LOG
origin=$(nats_origin_of "$first_log")

nats_start_all || bail "the cluster did not come back"
start_zpiped || bail "zpiped did not start for the replay"
check "the replay empties the spool" wait_until 120 "the spill files" replay_done
check "the replay delivers all $K2" wait_until 120 "delivered $K2" delivered_is $K2
stop_zpiped
check "exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "accounting: replayed = delivered = $K2" check_accounting replayed=$K2 delivered=$K2 \
    spilled=0
check "no error lines in the log but the sink's own" check_log "$ZP_LOG" 'nats'

"$JS_STREAM" dump "$NATS_URLS" ZT > "$ZP_TMP/dump" || bail "js_stream dump failed"
cut -f3 "$ZP_TMP/dump" > "$ZP_TMP/stored"
{
    "$ZMQ_CLIENT" gen -n $K1 -s 100 -p first-
    "$ZMQ_CLIENT" gen -n $K2 -s 100 -p second-
} > "$ZP_TMP/sent"
check "the stream holds both lots exactly once" same_messages "$ZP_TMP/sent" "$ZP_TMP/stored"
cut -f1 "$ZP_TMP/dump" > "$ZP_TMP/ids"
seq 1 $N | sed "s/^/$origin-/" > "$ZP_TMP/ids.want"
check "every id is the first run's ($origin, seq 1..$N): the replay kept them" \
    same_messages "$ZP_TMP/ids.want" "$ZP_TMP/ids"
done_testing
