#!/bin/sh
# 301: the nats sink with nothing to publish to.  zpiped starts with every
# server of nats.servers down: it is ready all the same (not a config
# error), takes messages (router mode, ack = queued), logs that it is not
# connected and counts the failures in zpipe stats.  Then the servers start
# but the stream does not exist yet: the log says no stream answers on the
# subject.  Once the stream is created every message is stored, exactly
# once, in order of nothing but content: compared with what the client sent.
. "$(dirname "$0")/lib.sh"
. "$top_srcdir/tests/helpers/nats_cluster.sh"

setup
nats_test_init 3
N=5000

write_config "$ZP_CONF" input.mode=router output.sink=nats output.threads=2 output.batch=128 \
    "nats.servers=$NATS_SERVERS" nats.subject=zt.down nats.max_pending=1024 nats.ack_timeout=2s
start_zpiped || bail "zpiped did not start with every server down"
ok "zpiped is ready with every server down"
start_client down dealer -n $N -s 100 -p down- --window 200 --out "$ZP_TMP/ok.down" "$ZP_EP"
check "the client gets OK for all $N (ack = queued)" wait_clients 120
log_has() {
    grep -q -e "$1" "$ZP_LOG"
}
check "the log says it is not connected" \
    wait_until 60 "the log line" log_has 'nats:.*not connected'
check "zpipe stats counts the sink's errors" wait_until 30 "sink errors" nats_sink_errors_over 0
check "nothing is delivered yet" test "$(status_field delivered)" = 0

nats_start_all || bail "the cluster did not elect a metadata leader"
ok "the servers are up (no stream yet)"
errors_before=$("$ZPIPE" stats -s "$ZP_TMP/ctl.sock" --json | jq '[.sink.errors[]] | add')
check "the log says no stream answers on the subject" \
    wait_until 60 "the log line" log_has 'nats:.*stream'
check "zpipe stats counts those failures too" \
    wait_until 30 "more sink errors" nats_sink_errors_over "$errors_before"
check "nothing is delivered yet" test "$(status_field delivered)" = 0

"$JS_STREAM" create "$NATS_URLS" ZT zt.down --replicas 3 --dupe-window 5m ||
    bail "could not create the stream"
delivered_all() {
    [ "$(status_field delivered)" = "$N" ]
}
check "once the stream exists, all $N are delivered" wait_until 120 "delivered $N" delivered_all
check "the log says they are stored again" log_has 'nats:.*\(stored\|publish\|connected\)'
stop_zpiped
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "accounting: received = delivered = $N, none spilled" \
    check_accounting received=$N delivered=$N spilled=0
check "no error lines in the log but the sink's own" check_log "$ZP_LOG" 'nats'
"$JS_STREAM" dump "$NATS_URLS" ZT > "$ZP_TMP/dump" || bail "js_stream dump failed"
cut -f3 "$ZP_TMP/dump" > "$ZP_TMP/stored"
"$ZMQ_CLIENT" gen -n $N -s 100 -p down- > "$ZP_TMP/sent"
check "the stream holds every message exactly once" same_messages "$ZP_TMP/sent" "$ZP_TMP/stored"
check "... each with its own id" test "$(cut -f1 "$ZP_TMP/dump" | sort -u | wc -l)" -eq $N
done_testing
