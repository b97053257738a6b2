#!/bin/sh
# 300: the nats sink into a 3-node JetStream cluster (three nats-servers on
# loopback, tests/helpers/nats_cluster.sh), a stream of 3 replicas in files
# with a 5 minute duplicate window.  Two PUSH clients send 50,000 messages
# each (pull mode, two consumer threads), paced so that the run lasts about
# 30 s; a third of the way in, the stream's leader is killed with SIGKILL;
# once another leads and the stream has grown by a tenth more, the killed
# server is restarted, while the clients still send.
# Publishes whose ack the dead leader never sent time out (ack_timeout 2s)
# and go again with the same Nats-Msg-Id, so the stream must hold every
# message exactly once: read back with js_stream dump and compared by
# content, each with its own id of this run.
#
# ZP_NATS_N sets the total (default 100000; the sanitizer builds send
# 30000 at a third of the pace: the same run, kill and restart, a third of
# the messages, as they are slower to check and send).
. "$(dirname "$0")/lib.sh"
. "$top_srcdir/tests/helpers/nats_cluster.sh"

setup
nats_test_init 3
N=${ZP_NATS_N:-100000}
if [ -z "${ZP_NATS_N:-}" ] && [ -n "${zp_sanitizer:-}" ]; then
    N=30000
fi
HALF=$((N / 2))
RATE=$((N / 60))

nats_start_all || bail "the cluster did not elect a metadata leader"
ok "three nats-servers are a cluster"
"$JS_STREAM" create "$NATS_URLS" ZT zt.msgs --replicas 3 --storage file --dupe-window 5m ||
    bail "could not create the stream"
write_config "$ZP_CONF" input.mode=pull output.sink=nats output.threads=2 output.batch=256 \
    "nats.servers=$NATS_SERVERS" nats.subject=zt.msgs nats.max_pending=4096 nats.ack_timeout=2s
start_zpiped || bail "zpiped did not start"

count() {
    "$JS_STREAM" count "$NATS_URLS" ZT 2> /dev/null
}
count_at_least() {
    _c=$(count) && [ "$_c" -ge "$1" ]
}
start_client a push --hold -n $HALF -s 100 -p a- --rate $RATE "$ZP_EP"
start_client b push --hold -n $HALF -s 100 -p b- --rate $RATE "$ZP_EP"
wait_until 300 "$((N / 3)) messages in the stream" count_at_least $((N / 3)) ||
    diag "slow: $(count) in the stream"
leader=$("$JS_STREAM" leader "$NATS_URLS" ZT)
[ -n "$leader" ] || bail "the stream has no leader"
at_kill=$(count)
diag "killing the leader, $leader, with $at_kill of $N messages in the stream"
nats_kill "$leader"
new_leader() {
    _l=$("$JS_STREAM" leader "$NATS_URLS" ZT 2> /dev/null) && [ -n "$_l" ] && [ "$_l" != "$leader" ]
}
check "another server leads the stream" wait_until 120 "a new leader" new_leader
check "the stream grows without $leader" \
    wait_until 300 "$((at_kill + N / 10)) messages" count_at_least $((at_kill + N / 10))
diag "restarting $leader with $(count) of $N messages in the stream"
check "$leader restarts and answers" nats_restart "$leader"
check "the clients sent everything" wait_until 300 "the clients" clients_sent
check "zpiped read all $N" wait_read $N 300
check "the clients close cleanly" finish_clients
delivered_all() {
    [ "$(status_field delivered)" = "$N" ]
}
check "zpiped counts all $N delivered" wait_until 300 "delivered $N" delivered_all
stop_zpiped
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "accounting: received = delivered = $N, none spilled" \
    check_accounting received=$N delivered=$N spilled=0
# Lost connections and timed-out acks are warnings or errors naming nats.
check "no error lines in the log but the sink's own" check_log "$ZP_LOG" 'nats'

"$JS_STREAM" dump "$NATS_URLS" ZT > "$ZP_TMP/dump" 2> "$ZP_TMP/dump.err" ||
    bail "js_stream dump failed: $(cat "$ZP_TMP/dump.err")"
{
    "$ZMQ_CLIENT" gen -n $HALF -s 100 -p a-
    "$ZMQ_CLIENT" gen -n $HALF -s 100 -p b-
} > "$ZP_TMP/sent"
cut -f3 "$ZP_TMP/dump" > "$ZP_TMP/stored"
if same_messages "$ZP_TMP/sent" "$ZP_TMP/stored"; then
    ok "the stream holds every message exactly once (by content)"
else
    not_ok "the stream holds every message exactly once (by content)"
    diag "$(cat "$ZP_TMP/dump.err"); now the stream's leader is" \
        "$("$JS_STREAM" leader "$NATS_URLS" ZT) and it counts $(count)"
fi
origin=$(nats_origin_of "$ZP_LOG")
cut -f1 "$ZP_TMP/dump" > "$ZP_TMP/ids"
seq 1 $N | sed "s/^/$origin-/" > "$ZP_TMP/ids.want"
check "each has its own Nats-Msg-Id: this run's origin ($origin), seq 1..$N" \
    same_messages "$ZP_TMP/ids.want" "$ZP_TMP/ids"
check "no message has Zpipe-Parts (all are single-frame)" \
    test "$(cut -f2 "$ZP_TMP/dump" | sort -u)" = "-"
done_testing
